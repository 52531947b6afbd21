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
    public static GatewayHostProcess Start(params string[] settings) => StartWith([], settings);

    /// <summary>
    /// As <see cref="Start"/>, run through <paramref name="wrapper"/> (a command that execs the rest, such as
    /// <c>ip netns exec NAME</c>: the process is still the host's own, for signals and its exit code).
    /// </summary>
    public static GatewayHostProcess StartWith(string[] wrapper, params string[] settings)
    {
        var gatewayDirectory = Path.GetFullPath(Path.Combine(
            AppContext.BaseDirectory, "..", "..", "..", "..", "..", "src", "Gateway", "bin",
            new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0"));
        var start = new ProcessStartInfo(wrapper.Length > 0 ? wrapper[0] : "dotnet")
        {
            WorkingDirectory = gatewayDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var part in wrapper.Skip(1).Append(wrapper.Length > 0 ? "dotnet" : null).OfType<string>())
        {
            start.ArgumentList.Add(part);
        }

        start.ArgumentList.Add(Path.Combine(gatewayDirectory, "OrleansProtocol.Gateway.dll"));
        foreach (var setting in settings)
        {
            start.ArgumentList.Add(setting);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        return new GatewayHostProcess(Process.Start(start)!);
    }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The exit code, once exited.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Completes when the process ends by itself, however long that takes (the caller bounds it).</summary>
    public Task Exited => _process.WaitForExitAsync();

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

    /// <summary>How much output there is so far: a mark for <see cref="WaitForOutputAsync"/> to look after.</summary>
    public int OutputLength
    {
        get
        {
            lock (_output)
            {
                return _output.Length;
            }
        }
    }

    /// <summary>Waits until <paramref name="text"/> appears in the output (after <paramref name="since"/>, an <see cref="OutputLength"/>).</summary>
    public async Task WaitForOutputAsync(string text, int since = 0)
    {
        using var cts = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _changed.Next;
            if (Output.IndexOf(text, since, StringComparison.Ordinal) >= 0)
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

    /// <summary>SIGTERM, as an orchestrator stops a silo; returns without waiting for the exit (see <see cref="Exited"/>).</summary>
    public async Task SignalTerminateAsync()
    {
        using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()])!;
        await kill.WaitForExitAsync();
    }

    public async Task<int> TerminateAsync()
    {
        await SignalTerminateAsync();

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
