import Engine

/// The MISS model (ViT, JTM, decoder) and its PEFT wrappers live in this module.
public enum MileModelInfo {
    public static let name = "MISS"
}
