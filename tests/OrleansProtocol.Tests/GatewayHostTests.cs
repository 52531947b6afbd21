using System.Diagnostics;
using System.Net;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The real sample host, as <c>dotnet run --project src/Gateway</c> starts it, in its own process: it serves the samples,
/// answers the seed's README pipeline, and stops gracefully on SIGTERM.
/// </summary>
public sealed class GatewayHostTests
{
    [Fact]
    public async Task The_sample_host_serves_echo_and_the_seed_example_reports_ready_and_stops_on_SIGTERM()
    {
        var healthPort = TestPorts.Free();
        using var host = StartHost(healthPort);
        var endPoints = await host.WaitForListenersAsync("echo", "string-receiver", "framed-string-receiver", "chat", "upgrade", "resp", "smtp");
        Assert.Equal(7000, endPoints["echo"].Port - HostPortOffset);
        Assert.Equal(5566, endPoints["string-receiver"].Port - HostPortOffset);
        Assert.Equal(7001, endPoints["chat"].Port - HostPortOffset);
        Assert.Equal(6380, endPoints["resp"].Port - HostPortOffset);
        Assert.Equal(2525, endPoints["smtp"].Port - HostPortOffset);
        await host.WaitForOutputAsync($"Datagram endpoint echo-udp serving echodatagram on udp://127.0.0.1:{7000 + HostPortOffset}");

        // The health endpoint's HTTP server starts after the silo; the host says when everything has started.
        await host.WaitForOutputAsync("Application started");
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

        // Echo on the Unix socket, with netcat.
        var socket = Path.Combine(Path.GetTempPath(), "orleansprotocol", $"echo-{HostPortOffset}.sock");
        await host.WaitForOutputAsync($"Listener echo-unix serving echo on {socket}");
        if (File.Exists("/usr/bin/nc") || File.Exists("/bin/nc"))
        {
            using var nc = Process.Start(new ProcessStartInfo("bash", ["-c", $"printf 'hello unix\\n' | nc -N -U {socket}"]) { RedirectStandardOutput = true })!;
            Assert.Equal("hello unix", (await nc.StandardOutput.ReadToEndAsync().WaitAsync(TestTimeouts.Default)).TrimEnd('\n'));
        }

        // SMTP's STARTTLS with openssl, on the self-signed development certificate.
        if (File.Exists("/usr/bin/openssl"))
        {
            using var openssl = Process.Start(new ProcessStartInfo("openssl",
                ["s_client", "-starttls", "smtp", "-connect", $"127.0.0.1:{endPoints["smtp"].Port}", "-crlf", "-quiet", "-ign_eof"])
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            var smtp = openssl.StandardOutput.ReadToEndAsync();
            _ = openssl.StandardError.ReadToEndAsync();
            await openssl.StandardInput.WriteAsync("NOOP\nQUIT\n");
            openssl.StandardInput.Close();
            await openssl.WaitForExitAsync().WaitAsync(TestTimeouts.Default);
            Assert.Matches(@"250 2\.0\.0 OK, over TLSv1\.[23]\r?\n221 2\.0\.0 Bye", await smtp);
        }

        // UDP echo on the same port number, from outside (nc -u), and the RESP server answering redis-cli.
        Assert.Equal("hello udp", await RunUdpEchoAsync(endPoints["echo"].Port, "hello udp"));
        if (RedisCli.Installed)
        {
            Assert.Equal("PONG", await RedisCli.RunAsync(endPoints["resp"], "ping"));
        }

        // The seed README's command line, verbatim but for the port.
        var reply = await RunSeedPipelineAsync(endPoints["string-receiver"].Port);
        Assert.Equal([2, 0, 0, 0, (byte)'o', (byte)'k'], reply);
        await host.WaitForOutputAsync("received string: hello world");

        var exitCode = await host.TerminateAsync();
        Assert.Equal(0, exitCode);
        Assert.Contains("stopped accepting", host.Output);

        // Metrics export is off unless asked for.
        Assert.DoesNotContain("orleansprotocol.active_connections", host.Output);
    }

    [Fact]
    public async Task The_sample_host_exports_the_gateway_metrics_to_the_console_and_over_OTLP_when_configured()
    {
        // A real OTLP/HTTP receiver: the exporter posts protobuf, in which metric names appear as plain UTF-8.
        var otlpPort = TestPorts.Free();
        using var receiver = new HttpListener();
        receiver.Prefixes.Add($"http://127.0.0.1:{otlpPort}/");
        receiver.Start();
        var exported = ReceiveUntilAsync(receiver, "orleansprotocol.io.bytes");

        using var host = StartHost(
            TestPorts.Free(),
            "--Telemetry:Exporters=Console,Otlp",
            "--Telemetry:ExportInterval=00:00:01",
            $"--Telemetry:OtlpEndpoint=http://127.0.0.1:{otlpPort}/v1/metrics",
            "--Telemetry:OtlpProtocol=HttpProtobuf");
        var endPoints = await host.WaitForListenersAsync("echo");
        await using (var echo = await TestClient.ConnectAsync(endPoints["echo"]))
        {
            await echo.SendAsync("measured\n");
            Assert.Equal("measured", await echo.ReadLineAsync());
        }

        await host.WaitForOutputAsync("orleansprotocol.io.bytes");
        var (path, body) = await exported.WaitAsync(TestTimeouts.Default);
        Assert.Equal("/v1/metrics", path);
        Assert.Contains("orleansprotocol.active_connections", body);
        Assert.Equal(0, await host.TerminateAsync());
    }

    /// <summary>Answers OTLP posts until one mentions <paramref name="text"/>; returns its path and body (as Latin-1).</summary>
    private static async Task<(string Path, string Body)> ReceiveUntilAsync(HttpListener receiver, string text)
    {
        while (true)
        {
            var context = await receiver.GetContextAsync();
            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            context.Response.StatusCode = 200;
            context.Response.Close();
            var content = Encoding.Latin1.GetString(body.ToArray());
            if (content.Contains(text))
            {
                return (context.Request.Url!.AbsolutePath, content);
            }
        }
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

    /// <summary><c>echo text | nc -u 127.0.0.1 port</c> (a .NET UdpClient without netcat); the first reply datagram.</summary>
    private static async Task<string> RunUdpEchoAsync(int port, string text)
    {
        if (!File.Exists("/usr/bin/nc") && !File.Exists("/bin/nc"))
        {
            using var udp = new System.Net.Sockets.UdpClient();
            await udp.SendAsync(System.Text.Encoding.UTF8.GetBytes(text + "\n"), new IPEndPoint(IPAddress.Loopback, port));
            return System.Text.Encoding.UTF8.GetString((await udp.ReceiveAsync().WaitAsync(TestTimeouts.Default)).Buffer).TrimEnd('\n');
        }

        using var nc = Process.Start(new ProcessStartInfo("bash", ["-c", $"echo '{text}' | nc -u 127.0.0.1 {port}"]) { RedirectStandardOutput = true })!;
        try
        {
            // nc -u stays open after its input ends; the echoed line is all we wait for.
            return (await nc.StandardOutput.ReadLineAsync().WaitAsync(TestTimeouts.Default))!;
        }
        finally
        {
            nc.Kill(entireProcessTree: true);
        }
    }

    // The sample ports, moved out of the way of a developer's own `dotnet run` (and of other tests).
    private const int HostPortOffset = 20000;

    private static GatewayHostProcess StartHost(int healthPort, params string[] more) =>
        GatewayHostProcess.Start(
        [
            $"--Silo:SiloPort={TestPorts.Free()}",
            $"--Silo:GatewayPort={TestPorts.Free()}",
            $"--OrleansProtocol:PortOffset={HostPortOffset}",
            $"--Health:Urls=http://127.0.0.1:{healthPort}",
            .. more,
        ]);
}
