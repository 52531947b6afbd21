using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

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

        var settings = SettingsParser.Parse(args);
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

/// <summary>A server in its own process, so its CPU time is its own.</summary>
internal sealed class ServerProcess : IDisposable
{
    private static readonly Regex EchoListener = new(@"Listener echo serving \S+ on (?<endpoint>[\d.]+:\d+)");
    private static readonly Regex BaselineListener = new(@"(baseline|kestrel|asyncio|floor) listening on (?<endpoint>[\d.]+:\d+)");
    private static readonly HttpClient Http = new();

    private readonly Process _process;

    private ServerProcess(Process process, IPEndPoint endPoint)
    {
        _process = process;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public int Pid => _process.Id;

    /// <summary>A second silo whose CPU counts with this one's (the grains' silo in <c>--remote</c> runs).</summary>
    public ServerProcess? Companion { get; private set; }

    /// <summary>The process's resident set size, from /proc (Linux).</summary>
    public long ResidentBytes =>
        File.ReadLines($"/proc/{Pid}/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024).First();

    public TimeSpan CpuTime
    {
        get
        {
            _process.Refresh();
            return _process.TotalProcessorTime + (Companion?.CpuTime ?? TimeSpan.Zero);
        }
    }

    /// <summary>The gateway host's diagnostics endpoint (<c>/diagnostics/runtime</c>); null for the baselines.</summary>
    public Uri? Diagnostics { get; private set; }

    /// <summary>The managed bytes the server process has allocated so far (summed with the companion's), or null.</summary>
    public async Task<long?> AllocatedBytesAsync()
    {
        if (Diagnostics is null)
        {
            return null;
        }

        using var json = System.Text.Json.JsonDocument.Parse(await Http.GetStringAsync(Diagnostics));
        return json.RootElement.GetProperty("allocatedBytes").GetInt64() + (Companion is null ? 0 : await Companion.AllocatedBytesAsync() ?? 0);
    }

    /// <summary>A real redis-server on a free loopback port, without persistence: the reference for the RESP sample.</summary>
    public static async Task<ServerProcess> StartRedisAsync()
    {
        var port = FreePort();
        var start = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true };
        foreach (var argument in new[] { "--port", $"{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" })
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start)!;
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("Ready to accept connections", StringComparison.Ordinal) == true)
            {
                ready.TrySetResult();
            }
        };
        process.BeginOutputReadLine();
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return new ServerProcess(process, new IPEndPoint(IPAddress.Loopback, port));
    }

    public static Task<ServerProcess> StartKestrelAsync()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
        start.ArgumentList.Add(typeof(Program).Assembly.Location);
        start.ArgumentList.Add("--kestrel-server");
        start.ArgumentList.Add("0");
        return StartAsync(start, BaselineListener);
    }

    /// <summary>The floor with sockets (<c>OrleansProtocol.Bench.Floor --serve</c>), built beside the bench.</summary>
    public static Task<ServerProcess> StartFloorAsync(string configuration)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
        start.ArgumentList.Add(Path.Combine(RepositoryRoot(), "bench", "OrleansProtocol.Bench.Floor", "bin", configuration, "net10.0", "OrleansProtocol.Bench.Floor.dll"));
        start.ArgumentList.Add("--serve");
        start.ArgumentList.Add("0");
        return StartAsync(start, BaselineListener);
    }

    /// <summary>Python asyncio's echo (<c>bench/asyncio_echo.py</c>), or null where python3 is missing.</summary>
    public static async Task<ServerProcess?> TryStartAsyncioAsync()
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true };
        start.ArgumentList.Add(Path.Combine(RepositoryRoot(), "bench", "asyncio_echo.py"));
        start.ArgumentList.Add("0");
        try
        {
            return await StartAsync(start, BaselineListener);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Console.WriteLine("python3 not found: the asyncio baseline is left out.");
            return null;
        }
    }

    private static string RepositoryRoot()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "OrleansProtocol.sln")))
        {
            root = Path.GetDirectoryName(root.TrimEnd(Path.DirectorySeparatorChar)) ?? throw new InvalidOperationException("repository root not found");
        }

        return root;
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    public static Task<ServerProcess> StartBaselineAsync()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
        start.ArgumentList.Add(typeof(Program).Assembly.Location);
        start.ArgumentList.Add("--baseline-server");
        start.ArgumentList.Add("0");
        return StartAsync(start, BaselineListener);
    }

    /// <summary>
    /// Two silos: the sockets on the first, every grain on the second (<c>Placement=Remote</c>). Returns the first,
    /// with the second as its companion, once the first sees the second.
    /// </summary>
    public static async Task<ServerProcess> StartGatewayPairAsync(string configuration)
    {
        var primary = await StartGatewayAsync(configuration, "--OrleansProtocol:Listeners:echo:Placement=Remote");
        primary.Companion = await StartGatewayAsync(
            configuration, "--Silo:SiloPort=21112", "--Silo:GatewayPort=21301", "--Clustering:PrimarySiloPort=21111", "--OrleansProtocol:PortOffset=21000");

        // Membership reaches the first silo on its next refresh; Remote placement falls back to local until then.
        await Task.Delay(TimeSpan.FromSeconds(5));
        return primary;
    }

    /// <summary>
    /// <paramref name="silos"/> gateway silos in one cluster, the first's samples at PortOffset 20000 and each next one's
    /// 1,000 further (chat on 27001, 28001, 29001; RESP on 26380, 27380, …); CPU and allocation are summed over all.
    /// </summary>
    public static async Task<ServerProcess> StartGatewayClusterAsync(string configuration, int silos)
    {
        var primary = await StartGatewayAsync(configuration);
        var last = primary;
        for (var i = 1; i < silos; i++)
        {
            var offset = 20000 + (1000 * i);
            last.Companion = await StartGatewayAsync(
                configuration, $"--Silo:SiloPort={offset + 1112}", $"--Silo:GatewayPort={offset + 1301}", "--Clustering:PrimarySiloPort=21111", $"--OrleansProtocol:PortOffset={offset}");
            last = last.Companion;
        }

        // Membership reaches every silo on its next refresh.
        await Task.Delay(TimeSpan.FromSeconds(silos > 1 ? 5 : 0));
        return primary;
    }

    /// <summary>The pids of a gateway and its companions.</summary>
    public string Pids => Companion is null ? $"{Pid}" : $"{Pid}, {Companion.Pids}";

    /// <summary>Settings from the bench's command line for every gateway process (last, so they win).</summary>
    public static string[] GatewaySettings { get; set; } = [];

    public static async Task<ServerProcess> StartGatewayAsync(string configuration, params string[] extra)
    {
        var root = RepositoryRoot();
        var diagnostics = new Uri($"http://127.0.0.1:{FreePort()}/diagnostics/runtime");
        var directory = extra.FirstOrDefault(e => e.StartsWith("--directory=", StringComparison.Ordinal)) is { } other
            ? other["--directory=".Length..]
            : Path.Combine(root, "src", "Gateway", "bin", configuration, "net10.0");
        extra = [.. extra.Where(e => !e.StartsWith("--directory=", StringComparison.Ordinal))];
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, WorkingDirectory = directory };
        foreach (var argument in new[]
        {
            Path.Combine(directory, "OrleansProtocol.Gateway.dll"),
            "--Silo:SiloPort=21111",
            "--Silo:GatewayPort=21300",
            // The samples' fixed ports (and Unix socket) move out of the way of a host already serving them; the echo
            // listener measured takes any free port. A second silo (--remote) moves its samples again.
            "--OrleansProtocol:PortOffset=20000",
            "--OrleansProtocol:Listeners:echo:Port=0",
            $"--Health:Urls=http://127.0.0.1:{diagnostics.Port}",

            // As deployed (deploy/k8s): without Orleans' dashboard, a development aid that hooks every activation;
            // measure it with --Dashboard:Enabled=true (docs/performance.md).
            "--Dashboard:Enabled=false",

            // Every bench connection comes from 127.0.0.1: lift the per-address limit (the listener's 10,000 stays).
            "--OrleansProtocol:Listeners:echo:MaxConnectionsPerAddress=100000",
        }.Concat(extra).Concat(GatewaySettings))
        {
            start.ArgumentList.Add(argument);
        }

        var gateway = await StartAsync(start, EchoListener);
        gateway.Diagnostics = diagnostics;
        return gateway;
    }

    private static async Task<ServerProcess> StartAsync(ProcessStartInfo start, Regex ready)
    {
        var process = Process.Start(start)!;
        var endPoint = new TaskCompletionSource<IPEndPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line && ready.Match(line) is { Success: true } match)
            {
                endPoint.TrySetResult(IPEndPoint.Parse(match.Groups["endpoint"].Value));
            }
        };
        process.BeginOutputReadLine();
        return new ServerProcess(process, await endPoint.Task.WaitAsync(TimeSpan.FromSeconds(60)));
    }

    public void Dispose()
    {
        Companion?.Dispose();
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        _process.Dispose();
    }
}

/// <summary>
/// Memory per idle connection: each server's resident set before and after N connections that each made one round trip
/// (so the gateway holds a socket, its pipes and an active grain for each) and then sit idle.
/// </summary>
internal static class IdleMemory
{
    // How long the servers get to settle (GC, pools) before the second reading; not a synchronisation. With
    // hibernation (--OrleansProtocol:Listeners:echo:HibernateAfter=…) give it longer: --settle 20.
    private static TimeSpan _settle = TimeSpan.FromSeconds(3);

    /// <summary>From <c>--settle SECONDS</c>.</summary>
    public static void Configure(string[] args)
    {
        if (Array.IndexOf(args, "--settle") is var i and >= 0 && i + 1 < args.Length)
        {
            _settle = TimeSpan.FromSeconds(double.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    public static async Task RunAsync(Settings settings)
    {
        // Every connection is a file descriptor in the server and another here; say so up front rather than fail midway.
        var maxOpenFiles = OpenFileLimit();
        if (settings.IdleConnections + 1000 > maxOpenFiles)
        {
            Console.WriteLine($"{settings.IdleConnections:N0} connections need as many open files in the server and here; this process may open {maxOpenFiles:N0} (ulimit -n). Raise it (or its hard limit) first.");
            return;
        }

        Console.WriteLine($"resident memory per idle connection, {settings.IdleConnections} connections each after one 16 B round trip; {Environment.ProcessorCount} cores");
        Console.WriteLine();
        Console.WriteLine("| server | RSS before MiB | RSS with connections MiB | KiB per connection | opened in s | first echo after the silence p50 / p99 µs | next echo p50 / p99 µs |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        using (var baseline = await ServerProcess.StartBaselineAsync())
        {
            await MeasureAsync("baseline", baseline, settings.IdleConnections);
        }

        using (var kestrel = await ServerProcess.StartKestrelAsync())
        {
            await MeasureAsync("kestrel", kestrel, settings.IdleConnections);
        }

        using (var asyncio = await ServerProcess.TryStartAsyncioAsync())
        {
            if (asyncio is not null)
            {
                await MeasureAsync("asyncio", asyncio, settings.IdleConnections);
            }
        }

        // The listener's and the silo's connection limits are lifted to the count asked for (configuration, as a user
        // would); the process's open-file limit is the machine's.
        var limit = (settings.IdleConnections + 1000).ToString(System.Globalization.CultureInfo.InvariantCulture);
        using (var gateway = await ServerProcess.StartGatewayAsync(
            settings.Configuration, "--OrleansProtocol:Listeners:echo:MaxConnections=" + limit, "--OrleansProtocol:MaxConnections=" + limit))
        {
            await MeasureAsync("gateway", gateway, settings.IdleConnections);
        }
    }

    private static async Task MeasureAsync(string name, ServerProcess server, int count)
    {
        // Warm the server's paths (JIT, pools, the grain class) with a few connections, then take the first reading.
        Close(await OpenAsync(server, 16));
        await Task.Delay(_settle);
        var before = server.ResidentBytes;
        var opening = Stopwatch.StartNew();
        var sockets = await OpenAsync(server, count);
        var opened = opening.Elapsed;
        await Task.Delay(_settle);
        var after = server.ResidentBytes;
        var (first, second) = await EchoEachAsync(sockets);
        Console.WriteLine($"| {name} | {before / 1048576.0:N1} | {after / 1048576.0:N1} | {(after - before) / 1024.0 / count:N1} | {opened.TotalSeconds:N1} | "
            + $"{Percentile(first, 0.5):N0} / {Percentile(first, 0.99):N0} | {Percentile(second, 0.5):N0} / {Percentile(second, 0.99):N0} |");
        Close(sockets);
    }

    /// <summary>
    /// Every connection still echoes: one at a time, two round trips each; the first after the silence (a hibernated
    /// grain wakes for it), the second right after. Microseconds.
    /// </summary>
    private static async Task<(List<double> First, List<double> Second)> EchoEachAsync(List<Socket> sockets)
    {
        var first = new List<double>(sockets.Count);
        var second = new List<double>(sockets.Count);
        var message = new byte[16];
        var echo = new byte[16];
        foreach (var socket in sockets)
        {
            foreach (var times in new[] { first, second })
            {
                var started = Stopwatch.GetTimestamp();
                await socket.SendAsync(message);
                for (var read = 0; read < echo.Length;)
                {
                    var n = await socket.ReceiveAsync(echo.AsMemory(read));
                    read += n > 0 ? n : throw new IOException("the server closed an idle connection");
                }

                times.Add(Stopwatch.GetElapsedTime(started).TotalMicroseconds);
            }
        }

        return (first, second);
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))];
    }

    private static long OpenFileLimit() =>
        File.ReadLines("/proc/self/limits").Where(l => l.StartsWith("Max open files", StringComparison.Ordinal))
            .Select(l => long.Parse(l["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture))
            .DefaultIfEmpty(long.MaxValue).First();

    private static async Task<List<Socket>> OpenAsync(ServerProcess server, int count)
    {
        var sockets = new List<Socket>(count);
        var message = new byte[16];
        for (var batch = 0; batch < count; batch += 100)
        {
            sockets.AddRange(await Task.WhenAll(Enumerable.Range(0, Math.Min(100, count - batch)).Select(async _ =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };

                // One loopback source address per 20,000 connections: the ephemeral ports of one (source, destination)
                // pair run out near 28,000. IP_BIND_ADDRESS_NO_PORT (24) leaves the port to connect, as without a bind.
                socket.SetRawSocketOption(0, 24, BitConverter.GetBytes(1));
                socket.Bind(new IPEndPoint(new IPAddress([127, 0, 0, (byte)(1 + batch / 20_000)]), 0));
                await socket.ConnectAsync(server.EndPoint);
                await socket.SendAsync(message);
                var echo = new byte[message.Length];
                for (var read = 0; read < echo.Length;)
                {
                    var n = await socket.ReceiveAsync(echo.AsMemory(read));
                    read += n > 0 ? n : throw new IOException("the server closed a connection");
                }

                return socket;
            })));
        }

        return sockets;
    }

    private static void Close(List<Socket> sockets)
    {
        foreach (var socket in sockets)
        {
            socket.Dispose();
        }
    }
}

/// <summary>
/// Connection churn: each worker connects, makes one 64 B echo round trip, half-closes and waits for the server's FIN,
/// over and over — on the gateway the whole lifecycle: accept, <c>ConnectionMade</c>, <c>DataReceived</c>,
/// <c>EofReceived</c>, close, <c>ConnectionLost</c>, deactivation. Connections per second and server CPU per connection.
/// </summary>
internal static class Churn
{
    public static async Task RunAsync(Settings settings)
    {
        Console.WriteLine(
            $"connection churn (connect, one 64 B echo, close), {settings.Rounds} rounds of {settings.Duration.TotalSeconds:0} s per server and worker count " +
            $"after {settings.Warmup.TotalSeconds:0} s warm-up each, medians shown; {Environment.ProcessorCount} cores shared by client and servers");
        using var servers = await ServerSet.StartAsync(settings);
        Console.WriteLine();
        Console.WriteLine("| workers | server | connections/s | server CPU µs/connection | p50 µs | p99 µs | connections/s vs baseline | CPU vs baseline | allocated B/connection |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var workers in settings.Connections)
        {
            var results = await servers.AlternateAsync(settings, server => RunOnceAsync(server, workers, settings));
            var b = results[0].Result;
            foreach (var (name, r) in results)
            {
                Console.WriteLine($"| {workers} | {name} | {r.RequestsPerSecond:N0} | {r.ServerCpuMicrosPerRequest:N0} | {r.P50Micros:N0} | {r.P99Micros:N0} | "
                    + (ReferenceEquals(r, b) ? "| | " : $"{r.RequestsPerSecond / b.RequestsPerSecond:P0} | {r.ServerCpuMicrosPerRequest / b.ServerCpuMicrosPerRequest:N2}× | ")
                    + (r.AllocatedBytesPerRequest is { } x ? $"{x:N0} |" : "|"));
            }
        }
    }

    private static Task<LoadResult> RunOnceAsync(ServerProcess server, int workers, Settings settings) =>
        Measurement.RunAsync(server, workers, settings, async (_, stopped, record) =>
        {
            var message = new byte[64];
            var echo = new byte[64];
            while (!stopped())
            {
                var start = Stopwatch.GetTimestamp();
                using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true })
                {
                    await socket.ConnectAsync(server.EndPoint);
                    await socket.SendAsync(message);
                    for (var read = 0; read < echo.Length;)
                    {
                        var n = await socket.ReceiveAsync(echo.AsMemory(read));
                        read += n > 0 ? n : throw new IOException("the server closed before echoing");
                    }

                    // Half-close and wait for the server's FIN: the connection's whole life is in the figure.
                    socket.Shutdown(SocketShutdown.Send);
                    while (await socket.ReceiveAsync(echo) > 0)
                    {
                    }
                }

                record(Stopwatch.GetTimestamp() - start, 1);
            }
        });
}
