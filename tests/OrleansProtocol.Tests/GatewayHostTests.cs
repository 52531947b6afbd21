using System.Diagnostics;
using System.Net.Http;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The real sample host, as <c>dotnet run --project src/Gateway</c> starts it, in its own process: it serves the samples,
/// answers the seed's README pipeline, and stops gracefully on SIGTERM.
/// </summary>
public sealed class GatewayHostTests
{
    private static readonly Regex ListenerLine = new(@"Listener (?<name>[\w-]+) serving \S+ on (?<endpoint>[\d.]+:\d+)");

    [Fact]
    public async Task The_sample_host_serves_echo_and_the_seed_example_reports_ready_and_stops_on_SIGTERM()
    {
        var healthPort = TestPorts.Free();
        using var host = StartHost(healthPort);
        var endPoints = await host.WaitForListenersAsync("echo", "string-receiver", "framed-string-receiver", "chat", "upgrade");
        Assert.Equal(7000, endPoints["echo"].Port - HostPortOffset);
        Assert.Equal(5566, endPoints["string-receiver"].Port - HostPortOffset);
        Assert.Equal(7001, endPoints["chat"].Port - HostPortOffset);

        using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{healthPort}") })
        {
            var ready = await http.GetAsync("/healthz/ready").WaitAsync(TestTimeouts.Default);
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz/live")).StatusCode);
        }

        await using (var echo = await TestClient.ConnectAsync(endPoints["echo"]))
        {
            await echo.SendAsync("hello echo\n");
            Assert.Equal("hello echo", await echo.ReadLineAsync());
        }

        // The seed README's command line, verbatim but for the port.
        var reply = await RunSeedPipelineAsync(endPoints["string-receiver"].Port);
        Assert.Equal([2, 0, 0, 0, (byte)'o', (byte)'k'], reply);
        await host.WaitForOutputAsync("received string: hello world");

        var exitCode = await host.TerminateAsync();
        Assert.Equal(0, exitCode);
        Assert.Contains("stopped accepting", host.Output);
    }

    private static async Task<byte[]> RunSeedPipelineAsync(int port)
    {
        const string python = "import struct; print((b'%shello world' % struct.pack('<L', 12)).decode('ascii'))";
        if (!File.Exists("/usr/bin/nc") && !File.Exists("/bin/nc"))
        {
            // Without netcat (.ci/run installs it), send what the pipeline sends.
            await using var client = await TestClient.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
            await client.SendAsync(StringReceiverTests.Frame("hello world\n"));
            return await client.ReadExactlyAsync(6);
        }

        var start = new ProcessStartInfo("bash", ["-c", $"python3 -c \"{python}\" | nc localhost {port}"])
        {
            RedirectStandardOutput = true,
        };
        using var pipeline = Process.Start(start)!;
        try
        {
            // nc keeps the connection open after its input ends; the answer is all we wait for.
            var reply = new byte[6];
            await pipeline.StandardOutput.BaseStream.ReadExactlyAsync(reply).AsTask().WaitAsync(TestTimeouts.Default);
            return reply;
        }
        finally
        {
            pipeline.Kill(entireProcessTree: true);
        }
    }

    // The sample ports, moved out of the way of a developer's own `dotnet run` (and of other tests).
    private const int HostPortOffset = 20000;

    private static HostProcess StartHost(int healthPort)
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
        foreach (var argument in new[]
        {
            Path.Combine(gatewayDirectory, "OrleansProtocol.Gateway.dll"),
            $"--Silo:SiloPort={TestPorts.Free()}",
            $"--Silo:GatewayPort={TestPorts.Free()}",
            $"--OrleansProtocol:PortOffset={HostPortOffset}",
            $"--Health:Urls=http://127.0.0.1:{healthPort}",
        })
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        return new HostProcess(Process.Start(start)!);
    }

    private sealed class HostProcess : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly CallbackRecorder.Signal _changed = new();

        public HostProcess(Process process)
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
}
