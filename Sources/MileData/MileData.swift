/// SLAKE, VQA-RAD and MILE instruction data, image decoding and the tokenizer live in this module.
public enum MileDataInfo {
    public static let name = "data"
}
