import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` (the git commit and dirty flag of the package checkout) before every build, so
/// a binary records the commit it was built from, not the one of whatever directory it runs in. The script
/// rewrites the file only when its content changes, so an unchanged checkout recompiles nothing.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("generated")
        let script = context.package.directoryURL.appendingPathComponent("tools/buildinfo.sh")
        return [.prebuildCommand(displayName: "Embedding the git commit (tools/buildinfo.sh)",
                                 executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: [script.path, context.package.directoryURL.path, output.path],
                                 outputFilesDirectory: output)]
    }
}
