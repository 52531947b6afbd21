using System.Diagnostics;
using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>The real <c>redis-cli</c> and <c>redis-benchmark</c> (Debian's <c>redis-tools</c>), run against a port.</summary>
public static class RedisCli
{
    public const string Path = "/usr/bin/redis-cli";

    public const string BenchmarkPath = "/usr/bin/redis-benchmark";

    public static bool Installed => File.Exists(Path) && File.Exists(BenchmarkPath);

    public static int PortOf(EndPoint endPoint) => ((IPEndPoint)endPoint).Port;

    /// <summary>Runs <c>redis-cli -p port --no-raw args</c> (replies typed as a terminal shows them) and returns its output.</summary>
    public static Task<string> RunAsync(EndPoint server, params string[] arguments) =>
        RunToolAsync(Path, null, ["-p", $"{PortOf(server)}", "--no-raw", .. arguments]);

    /// <summary>Runs a tool with <paramref name="input"/> on its standard input; returns standard output, asserting exit code 0.</summary>
    public static async Task<string> RunToolAsync(string tool, string? input, string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(tool, arguments)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (input is not null)
        {
            await process.StandardInput.WriteAsync(input);
        }

        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TestTimeouts.Default * 4);
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"{tool} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await error}");
        return (await output).TrimEnd('\n');
    }

    /// <summary>A long-running <c>redis-cli</c> (SUBSCRIBE) whose raw output is read line by line.</summary>
    public sealed class Session : IDisposable
    {
        private readonly Process _process;

        public Session(EndPoint server, params string[] arguments)
        {
            _process = Process.Start(new ProcessStartInfo(Path, ["-p", $"{PortOf(server)}", .. arguments])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
        }

        public async Task<string> ReadLineAsync() =>
            await _process.StandardOutput.ReadLineAsync().WaitAsync(TestTimeouts.Default)
                ?? throw new EndOfStreamException($"redis-cli ended: {await _process.StandardError.ReadToEndAsync()}");

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            _process.Dispose();
        }
    }
}
