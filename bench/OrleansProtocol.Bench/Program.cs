using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace OrleansProtocol.Bench;

/// <summary>
/// Closed-loop request/response echo: each connection sends a message, reads the whole echo back, verifies it, and
/// sends the next. Servers run in their own processes so their CPU time can be measured; the load runs here.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--baseline-server")
        {
            await BaselineEchoServer.RunAsync(int.Parse(args[1]));
            return 0;
        }

        if (args.Length > 0 && args[0] == "--kestrel-server")
        {
            await KestrelEchoServer.RunAsync(int.Parse(args[1]));
            return 0;
        }

        if (args.Length > 0 && args[0] == "--hold")
        {
            await ClusterIdle.HoldAsync(args);
            return 0;
        }

        var settings = SettingsParser.Parse(args);
        if (args.Contains("--idle-cluster"))
        {
            ServerProcess.GatewaySettings = settings.GatewaySettings;
            await ClusterIdle.RunAsync(args, settings.Configuration);
            return 0;
        }

        if (args.Contains("--chat"))
        {
            ServerProcess.GatewaySettings = settings.GatewaySettings;
            await FanOutBench.ChatAsync(args, settings.Configuration);
            return 0;
        }

        if (args.Contains("--pubsub"))
        {
            ServerProcess.GatewaySettings = settings.GatewaySettings;
            await PubSubBench.RunAsync(args, settings.Configuration);
            return 0;
        }

        ServerProcess.GatewaySettings = settings.GatewaySettings;
        if (settings.IdleConnections > 0)
        {
            IdleMemory.Configure(args);
            await IdleMemory.RunAsync(settings);
            return 0;
        }

        if (settings.Churn)
        {
            await Churn.RunAsync(settings);
            return 0;
        }

        Console.WriteLine(
            $"echo request/response, {(settings.Pipeline > 1 ? $"{settings.Pipeline} pipelined messages of " : "")}{settings.Size} B messages, {settings.Rounds} rounds of {settings.Duration.TotalSeconds:0} s per server and " +
            $"connection count after {settings.Warmup.TotalSeconds:0} s warm-up each, medians shown; {Environment.ProcessorCount} cores shared by client and servers");

        using var servers = await ServerSet.StartAsync(settings);
        Console.WriteLine(servers.Describe()
            + (settings.Remote ? $", every grain on a second silo (pid {servers.Gateway.Companion!.Pid}); server CPU is both silos'" : ""));
        Console.WriteLine();
        Console.WriteLine("| connections | server | req/s | server CPU µs/req | p50 µs | p99 µs | req/s vs baseline | CPU vs baseline | allocated B/req |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|");

        foreach (var connections in settings.Connections)
        {
            var results = await servers.AlternateAsync(settings, server => LoadRun.RunAsync(server, connections, settings));
            foreach (var (name, r) in results)
            {
                Print(connections, name, r, results[0].Result);
            }
        }

        return 0;
    }

    private static void Print(int connections, string server, LoadResult r, LoadResult baseline) =>
        Console.WriteLine(
            $"| {connections} | {server} | {r.RequestsPerSecond:N0} | {r.ServerCpuMicrosPerRequest:N1} | {r.P50Micros:N0} | {r.P99Micros:N0} | "
            + (ReferenceEquals(r, baseline) ? "| | " : $"{r.RequestsPerSecond / baseline.RequestsPerSecond:N2}× | {r.ServerCpuMicrosPerRequest / baseline.ServerCpuMicrosPerRequest:N2}× | ")
            + (r.AllocatedBytesPerRequest is { } a ? $"{a:N0} |" : "|"));
}

/// <summary>
/// The servers of one invocation: the plain .NET echo (the baseline every ratio is against), the Kestrel
/// <c>ConnectionHandler</c> echo, Python asyncio's <c>Protocol</c> echo (where python3 is on the machine), and the gateway.
/// Rounds alternate server by server, so all see the same background load; each figure is the median of its rounds.
/// </summary>
internal sealed class ServerSet : IDisposable
{
    private readonly List<(string Name, ServerProcess Server)> _servers;

    private ServerSet(List<(string Name, ServerProcess Server)> servers) => _servers = servers;

    public ServerProcess Gateway => _servers[^1].Server;

    public static async Task<ServerSet> StartAsync(Settings settings)
    {
        var servers = new List<(string, ServerProcess)>
        {
            ("baseline", await ServerProcess.StartBaselineAsync()),
            ("kestrel", await ServerProcess.StartKestrelAsync()),
        };
        if (await ServerProcess.TryStartAsyncioAsync() is { } asyncio)
        {
            servers.Add(("asyncio", asyncio));
        }

        // The gateway's floor: the same transport and the same grain call per read, with none of the gateway's own
        // parts. What lies between it and the plain echo is Orleans'; what lies between it and the gateway is ours.
        servers.Add(("floor", await ServerProcess.StartFloorAsync(settings.Configuration)));

        if (settings.CompareWith is { } before)
        {
            // Another build of the host (an earlier commit's src/Gateway/bin/Release/net10.0), its silo and samples
            // moved out of the way, alternated with the others: before and after in one invocation.
            servers.Add(("gateway-before", await ServerProcess.StartGatewayAsync(
                settings.Configuration, "--directory=" + before, "--Silo:SiloPort=21511", "--Silo:GatewayPort=21600", "--OrleansProtocol:PortOffset=25000")));
        }

        servers.Add(("gateway", settings.Remote
            ? await ServerProcess.StartGatewayPairAsync(settings.Configuration)
            : await ServerProcess.StartGatewayAsync(settings.Configuration)));
        return new ServerSet(servers);
    }

    public string Describe() => string.Join("; ", _servers.Select(s => $"{s.Name}: pid {s.Server.Pid} on {s.Server.EndPoint}"));

    public async Task<List<(string Name, LoadResult Result)>> AlternateAsync(Settings settings, Func<ServerProcess, Task<LoadResult>> run)
    {
        var runs = _servers.Select(_ => new List<LoadResult>()).ToArray();
        for (var round = 0; round < settings.Rounds; round++)
        {
            for (var i = 0; i < _servers.Count; i++)
            {
                runs[i].Add(await run(_servers[i].Server));
            }
        }

        return [.. _servers.Select((s, i) => (s.Name, LoadResult.Median(runs[i])))];
    }

    public void Dispose()
    {
        foreach (var (_, server) in _servers)
        {
            server.Dispose();
        }
    }
}

internal sealed record Settings(int Size, TimeSpan Warmup, TimeSpan Duration, int Rounds, int[] Connections, int IdleConnections, string Configuration)
{
    /// <summary>Connect, one echo, close, over and over (<c>--churn</c>): connections per second.</summary>
    public bool Churn { get; init; }

    /// <summary>The grains on a second silo process, away from their sockets (<c>--remote</c>, Placement=Remote).</summary>
    public bool Remote { get; init; }

    /// <summary>Messages per write, read back together (<c>--pipeline 16</c>, as <c>redis-benchmark -P 16</c>); each counts as a request.</summary>
    public int Pipeline { get; init; } = 1;

    /// <summary>Another build of the host to alternate with this one (<c>--compare DIR</c>, its output folder): before and after.</summary>
    public string? CompareWith { get; init; }

    /// <summary>Configuration for the gateway processes, as the host takes it (<c>--Section:Key=value</c>), after the bench's own.</summary>
    public string[] GatewaySettings { get; init; } = [];
}

internal static class SettingsParser
{
    public static Settings Parse(string[] args)
    {
        var churn = args.Contains("--churn");
        string Get(string name, string fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }

        return new Settings(
            int.Parse(Get("--size", "1024")),
            TimeSpan.FromSeconds(double.Parse(Get("--warmup", "1"))),
            TimeSpan.FromSeconds(double.Parse(Get("--duration", "5"))),
            int.Parse(Get("--rounds", "5")),
            Get("--connections", churn ? "16" : "1,16,64").Split(',').Select(int.Parse).ToArray(),
            int.Parse(Get("--idle", "0")),
#if DEBUG
            "Debug")
#else
            "Release")
#endif
        {
            Churn = churn,
            Remote = args.Contains("--remote"),
            Pipeline = int.Parse(Get("--pipeline", "1")),
            CompareWith = args.Contains("--compare") ? Path.GetFullPath(Get("--compare", "")) : null,
            GatewaySettings = [.. args.Where(a => a.StartsWith("--", StringComparison.Ordinal) && a.Contains(':', StringComparison.Ordinal) && a.Contains('=', StringComparison.Ordinal))],
        };
    }
}

internal sealed record LoadResult(double RequestsPerSecond, double ServerCpuMicrosPerRequest, double P50Micros, double P99Micros)
{
    /// <summary>Managed bytes the server allocated per request (the gateway's diagnostics endpoint); null for the baselines.</summary>
    public double? AllocatedBytesPerRequest { get; init; }

    /// <summary>The median of each figure over the rounds (each taken on its own).</summary>
    public static LoadResult Median(IReadOnlyList<LoadResult> runs)
    {
        double M(Func<LoadResult, double> f) => runs.Select(f).Order().ElementAt(runs.Count / 2);
        return new LoadResult(M(r => r.RequestsPerSecond), M(r => r.ServerCpuMicrosPerRequest), M(r => r.P50Micros), M(r => r.P99Micros))
        {
            AllocatedBytesPerRequest = runs.All(r => r.AllocatedBytesPerRequest is not null) ? M(r => r.AllocatedBytesPerRequest!.Value) : null,
        };
    }
}

/// <summary>
/// The measuring window every mode shares: workers run in a closed loop and record each completion's latency; after
/// the warm-up, completions, latencies and the server's CPU time are taken over the measured duration.
/// </summary>
internal static class Measurement
{
    /// <param name="worker">Runs until its stop flag is set; calls record(elapsed ticks, completions) after each round.</param>
    public static async Task<LoadResult> RunAsync(ServerProcess server, int workers, Settings settings, Func<int, Func<bool>, Action<long, int>, Task> worker)
    {
        var measuring = 0;
        var stop = 0;
        var latencies = new List<long>[workers];
        var tasks = Enumerable.Range(0, workers).Select(i => Task.Run(() =>
        {
            var list = latencies[i] = new List<long>(1 << 16);
            return worker(i, () => Volatile.Read(ref stop) == 1, (elapsed, completions) =>
            {
                if (Volatile.Read(ref measuring) == 1)
                {
                    for (var c = 0; c < completions; c++)
                    {
                        list.Add(elapsed);
                    }
                }
            });
        })).ToArray();

        await Task.Delay(settings.Warmup);
        var allocatedBefore = await server.AllocatedBytesAsync();
        var cpuBefore = server.CpuTime;
        var wallBefore = Stopwatch.GetTimestamp();
        Volatile.Write(ref measuring, 1);
        await Task.Delay(settings.Duration);
        Volatile.Write(ref measuring, 0);
        var wall = Stopwatch.GetElapsedTime(wallBefore);
        var cpu = server.CpuTime - cpuBefore;
        var allocated = await server.AllocatedBytesAsync() - allocatedBefore;
        Volatile.Write(ref stop, 1);
        await Task.WhenAll(tasks);
        var all = latencies.SelectMany(l => l).ToArray();
        Array.Sort(all);
        double Percentile(double p) => all.Length == 0 ? 0 : all[(int)Math.Min(all.Length - 1, p * all.Length)] * 1e6 / Stopwatch.Frequency;
        return new LoadResult(all.Length / wall.TotalSeconds, all.Length == 0 ? 0 : cpu.TotalMicroseconds / all.Length, Percentile(0.50), Percentile(0.99))
        {
            // The two readings bracket the window as the CPU readings do; one HTTP request each, a few KiB, is noise.
            AllocatedBytesPerRequest = allocated is { } bytes && all.Length > 0 ? (double)bytes / all.Length : null,
        };
    }
}

internal static class LoadRun
{
    public static async Task<LoadResult> RunAsync(ServerProcess server, int connections, Settings settings)
    {
        var sockets = new List<Socket>();
        for (var i = 0; i < connections; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(server.EndPoint);
            sockets.Add(socket);
        }

        var result = await Measurement.RunAsync(server, connections, settings, async (i, stopped, record) =>
        {
            var socket = sockets[i];
            var request = new byte[settings.Size * settings.Pipeline];
            var response = new byte[request.Length];
            var random = new Random(i);
            while (!stopped())
            {
                random.NextBytes(request.AsSpan(0, Math.Min(16, request.Length)));
                var start = Stopwatch.GetTimestamp();
                await SendAllAsync(socket, request);
                await ReceiveExactlyAsync(socket, response);
                var elapsed = Stopwatch.GetTimestamp() - start;
                if (!request.AsSpan().SequenceEqual(response))
                {
                    throw new InvalidDataException("echo mismatch");
                }

                record(elapsed, settings.Pipeline);
            }
        });

        foreach (var socket in sockets)
        {
            socket.Dispose();
        }

        return result;
    }

    private static async Task SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            data = data[await socket.SendAsync(data, SocketFlags.None)..];
        }
    }

    private static async Task ReceiveExactlyAsync(Socket socket, Memory<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            buffer = buffer[n..];
        }
    }
}

/// <summary>A plain .NET socket echo server: the baseline. One receive/send loop per connection, TCP_NODELAY.</summary>
internal static class BaselineEchoServer
{
    public static async Task RunAsync(int port)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(512);
        Console.WriteLine($"baseline listening on {listener.LocalEndPoint}");
        while (true)
        {
            var socket = await listener.AcceptAsync();
            socket.NoDelay = true;
            _ = EchoAsync(socket);
        }
    }

    private static async Task EchoAsync(Socket socket)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None);
                if (n == 0)
                {
                    break;
                }

                var data = buffer.AsMemory(0, n);
                while (!data.IsEmpty)
                {
                    data = data[await socket.SendAsync(data, SocketFlags.None)..];
                }
            }
        }
        catch (SocketException)
        {
        }
        finally
        {
            socket.Dispose();
        }
    }
}
