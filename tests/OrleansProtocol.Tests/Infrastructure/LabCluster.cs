using System.Diagnostics;
using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// Three silo processes of the gateway host in a <see cref="NetworkLab"/>, on one Redis in this namespace, with the
/// sample host's own membership settings (what an operator gets): echo streams to open, silos to restart as a
/// supervisor would, and on dispose what membership said, with times, for the reader of a failed run.
/// </summary>
public sealed class LabCluster : IAsyncDisposable
{
    private readonly Xunit.Abstractions.ITestOutputHelper _output;
    private readonly Process _redis;
    private readonly string[] _extra;
    private readonly List<StreamingEchoClient> _streams = [];
    private readonly List<GatewayHostProcess> _stopped = [];

    private LabCluster(NetworkLab lab, Process redis, int redisPort, string[] extra, Xunit.Abstractions.ITestOutputHelper output)
    {
        Lab = lab;
        _redis = redis;
        RedisPort = redisPort;
        _extra = extra;
        _output = output;
    }

    public NetworkLab Lab { get; }

    public int RedisPort { get; }

    public GatewayHostProcess[] Silos { get; } = new GatewayHostProcess[3];

    /// <summary>Each silo's echo listener, at its lab address.</summary>
    public IPEndPoint[] Echo { get; } = new IPEndPoint[3];

    /// <summary>Each silo's chat listener (rooms are cluster-wide), at its lab address.</summary>
    public IPEndPoint[] Chat { get; } = new IPEndPoint[3];

    /// <summary>Each silo's RESP listener (keys are cluster-wide), at its lab address.</summary>
    public IPEndPoint[] Resp { get; } = new IPEndPoint[3];

    /// <summary>Starts the lab, Redis and three silos (echo grains placed at random), and waits until each sees all three.</summary>
    public static async Task<LabCluster> StartAsync(Xunit.Abstractions.ITestOutputHelper output, params string[] extra)
    {
        var lab = await NetworkLab.CreateAsync(3);
        try
        {
            var (redis, port) = await RedisServer.StartAsync("0.0.0.0");
            var cluster = new LabCluster(lab, redis, port, extra, output);
            try
            {
                for (var i = 0; i < 3; i++)
                {
                    cluster.Silos[i] = cluster.Start(i);
                }

                for (var i = 0; i < 3; i++)
                {
                    await cluster.WaitServingAsync(i);
                }

                foreach (var silo in cluster.Silos)
                {
                    await silo.WaitForOutputAsync("Cluster membership: 3 active silos");
                }

                return cluster;
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts silo <paramref name="i"/> again after it exited (as its supervisor would) and waits until it serves.</summary>
    public async Task RestartAsync(int i)
    {
        Assert.True(Silos[i].HasExited, $"silo {i} is still running");
        _stopped.Add(Silos[i]);
        Silos[i] = Start(i);
        await WaitServingAsync(i);
    }

    /// <summary>Opens <paramref name="perSilo"/> echo streams to each gateway and waits until each echoes.</summary>
    public async Task<List<(int Silo, StreamingEchoClient Stream)>> StartStreamsAsync(int perSilo)
    {
        var streams = new List<(int, StreamingEchoClient)>();
        for (var i = 0; i < 3; i++)
        {
            for (var n = 0; n < perSilo; n++)
            {
                streams.Add((i, await OpenStreamAsync(i)));
            }
        }

        foreach (var (_, stream) in streams)
        {
            await stream.WaitForProgressAsync(2048);
        }

        return streams;
    }

    /// <summary>Opens one echo stream (256 B every 20 ms) to silo <paramref name="i"/>'s gateway; disposed with the cluster.</summary>
    public async Task<StreamingEchoClient> OpenStreamAsync(int i)
    {
        var stream = await StreamingEchoClient.StartAsync(Echo[i], seed: (i * 1000) + _streams.Count, chunk: 256, pace: TimeSpan.FromMilliseconds(20));
        lock (_streams)
        {
            _streams.Add(stream);
        }

        return stream;
    }

    /// <summary>A new client on silo <paramref name="i"/>'s gateway sends a line and gets it back.</summary>
    public async Task EchoOnceAsync(int i, string line)
    {
        await using var client = await TestClient.ConnectAsync(Echo[i]);
        await client.SendAsync(line + "\n");
        Assert.Equal(line, await client.ReadLineAsync());
    }

    /// <summary><paramref name="count"/> new clients, one after another, round the given gateways: each served.</summary>
    public async Task ServeNewClientsAsync(int count, string label, params int[] silos)
    {
        for (var n = 0; n < count; n++)
        {
            await EchoOnceAsync(silos[n % silos.Length], $"{label} {n}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var stream in _streams)
        {
            await stream.DisposeAsync();
        }

        foreach (var (silo, i) in Silos.Select((s, i) => (s, i)).Where(s => s.s is not null))
        {
            foreach (var line in silo.Output.Split('\n').Where(l => l.Contains("Cluster membership") || l.Contains("declared dead") || l.Contains("I have been told I am dead")).Take(10))
            {
                _output.WriteLine($"silo {i}: {line.Trim()[..Math.Min(line.Trim().Length, 240)]}");
            }

            // The whole output too, for a failed run's reader: the path is in the test's output.
            var log = Path.Combine(Path.GetTempPath(), $"lab-{Lab.Id}-silo{i}.log");
            await File.WriteAllTextAsync(log, silo.Output);
            _output.WriteLine($"silo {i}'s output: {log}");
            silo.Dispose();
        }

        _stopped.ForEach(s => s.Dispose());
        _redis.Kill();
        _redis.Dispose();
        await Lab.DisposeAsync();
    }

    private GatewayHostProcess Start(int i) => GatewayHostProcess.StartWith(Lab.Exec(i),
    [
        "--Clustering:Provider=Redis",
        $"--Clustering:Redis:ConnectionString={Lab.HostAddress(i)}:{RedisPort}",
        $"--Orleans:ClusterId=lab-{Lab.Id}",
        $"--Silo:AdvertisedIP={Lab.SiloAddress(i)}",
        "--OrleansProtocol:Listeners:echo:Host=*",
        "--OrleansProtocol:Listeners:chat:Host=*",
        "--OrleansProtocol:Listeners:resp:Host=*",
        "--OrleansProtocol:Listeners:echo:Placement=Random",

        // Each namespace has its own ports, but Unix sockets live in the shared file system.
        $"--OrleansProtocol:PortOffset={i * 100}",
        "--Health:Urls=http://127.0.0.1:0",
        "--Dashboard:Enabled=false",
        "--Logging:Console:FormatterName=simple",
        "--Logging:Console:FormatterOptions:TimestampFormat=HH:mm:ss.fff ",
        .. _extra,
    ]);

    private async Task WaitServingAsync(int i)
    {
        var listeners = await Silos[i].WaitForListenersAsync("echo", "chat", "resp");
        Echo[i] = new IPEndPoint(Lab.SiloAddress(i), listeners["echo"].Port);
        Chat[i] = new IPEndPoint(Lab.SiloAddress(i), listeners["chat"].Port);
        Resp[i] = new IPEndPoint(Lab.SiloAddress(i), listeners["resp"].Port);
    }
}
