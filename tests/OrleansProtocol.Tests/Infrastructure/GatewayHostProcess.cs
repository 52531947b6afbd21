using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>The real gateway host (src/Gateway) as its own process, with its output captured.</summary>
public sealed class GatewayHostProcess : IDisposable
{
    private static readonly Regex ListenerLine = new(@"Listener (?<name>[\w-]+) serving \S+ on (?<endpoint>[\d.]+:\d+)");

    /// <summary>Starts the host built next to the tests (same configuration) with the given command-line settings.</summary>
    public static GatewayHostProcess Start(params string[] settings)
    {
        var gatewayDirectory = Path.GetFullPath(Path.Combine(
            AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src", "Gateway", "bin",
            new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0"));
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = gatewayDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(gatewayDirectory, "OrleansProtocol.Gateway.dll"));
        foreach (var setting in settings)
        {
            start.ArgumentList.Add(setting);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        return new GatewayHostProcess(Process.Start(start)!);
    }

    public int ProcessId => _process.Id;

    /// <summary>SIGKILL: the process dies at once, as in a crash.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly CallbackRecorder.Signal _changed = new();

    private GatewayHostProcess(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public async Task<Dictionary<string, IPEndPoint>> WaitForListenersAsync(params string[] names)
    {
        using var cts = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _changed.Next;
            var found = ListenerLine.Matches(Output).ToDictionary(m => m.Groups["name"].Value, m => IPEndPoint.Parse(m.Groups["endpoint"].Value));
            if (names.All(found.ContainsKey))
            {
                return found;
            }

            Assert.False(_process.HasExited, $"The host exited early:\n{Output}");
            await next.WaitAsync(cts.Token);
        }
    }

    public async Task WaitForOutputAsync(string text)
    {
        using var cts = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _changed.Next;
            if (Output.Contains(text))
            {
                return;
            }

            await next.WaitAsync(cts.Token);
        }
    }

    /// <summary>Waits for the process to end by itself (a host that refuses to start, say); returns its exit code.</summary>
    public async Task<int> WaitForExitAsync()
    {
        await _process.WaitForExitAsync().WaitAsync(TestTimeouts.Default);
        return _process.ExitCode;
    }

    public async Task<int> TerminateAsync()
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()]))
        {
            await kill.WaitForExitAsync();
        }

        await _process.WaitForExitAsync().WaitAsync(TestTimeouts.Default);
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }

        _changed.Fire();
    }
}
