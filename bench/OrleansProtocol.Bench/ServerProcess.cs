using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace OrleansProtocol.Bench;

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

    /// <summary>This gateway's open and hibernated connections (its own, not its companions'), from the diagnostics endpoint.</summary>
    public async Task<(long Open, long Hibernated)> ConnectionsAsync()
    {
        using var json = System.Text.Json.JsonDocument.Parse(await Http.GetStringAsync(Diagnostics ?? throw new InvalidOperationException("not a gateway")));
        return (json.RootElement.GetProperty("openConnections").GetInt64(), json.RootElement.GetProperty("hibernatedConnections").GetInt64());
    }

    /// <summary>This gateway and its companions, first to last.</summary>
    public IEnumerable<ServerProcess> Chain
    {
        get
        {
            for (var server = this; server is not null; server = server.Companion)
            {
                yield return server;
            }
        }
    }

    /// <summary>Waits until the gateways (this one and its companions) hold <paramref name="count"/> hibernated connections in all.</summary>
    public async Task<long> WaitForHibernatedAsync(long count, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var asleep = (await Task.WhenAll(Chain.Select(s => s.ConnectionsAsync()))).Sum(c => c.Hibernated);
            if (asleep >= count || deadline.Elapsed > timeout)
            {
                return asleep;
            }

            // A condition poll of another process's counter, not a synchronisation.
            await Task.Delay(TimeSpan.FromMilliseconds(500));
        }
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
