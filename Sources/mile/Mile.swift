import ArgumentParser
import Engine

@main
struct Mile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mile",
        abstract: "Reproduce the MILE (MICCAI 2024) PEFT grid on medical VQA, cell by cell.",
        subcommands: [Info.self, DataCommand.self, Params.self, Plan.self, Run.self, Submit.self, Merge.self, Status.self, Score.self, Report.self, Baselines.self,
                      BaseCheck.self, Export.self]
    )
}

/// Prints the build's engine facts (BLAS library, kernel set and threads).
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the BLAS library and thread count.")
    func run() throws {
        BLAS.reexecWithFasterKernelsIfNeeded()
        Threads.configure()
        print("BLAS: \(BLAS.configuration) (kernels: \(BLAS.coreName))")
        print("threads: \(Threads.count) (the engine splits products over its threads; each OpenBLAS call runs on one)")
    }
}
