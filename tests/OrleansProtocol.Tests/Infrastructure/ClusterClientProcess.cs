using System.Diagnostics;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>The cluster client (src/Client, <c>orleansprotocol</c>) as an operator runs it: its own process.</summary>
public static class ClusterClientProcess
{
    /// <summary>Runs one command with the given settings; returns its exit code and everything it printed.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(params string[] arguments)
    {
        var tool = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src", "Client", "bin",
            new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "orleansprotocol.dll"));
        using var process = Process.Start(new ProcessStartInfo("dotnet", [tool, .. arguments])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TestTimeouts.Default);
        return (process.ExitCode, await output + await error);
    }
}
