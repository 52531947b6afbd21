using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace OrleansProtocol.Bench;

/// <summary>
/// Pub/sub fan-out through the RESP sample against a real redis-server, alternating in one invocation: S subscribers on
/// one channel, one publisher at a fixed rate (open loop: each PUBLISH goes when it is due, whatever the replies do),
/// 64-byte payloads carrying a sequence number and the send time. Every subscriber checks it gets every message once and
/// in order; reported per server are deliveries per second, server CPU per delivered message, and the latency from
/// publish to delivery (p50, p99). With <c>--silos 2</c> the subscribers are split over two silos' gateways and the CPU
/// is both processes' (<c>--all-on-first</c>: the subscribers all on the first, the second only taking part).
/// </summary>
/// <example><c>dotnet run -c Release --project bench/OrleansProtocol.Bench -- --pubsub --subscribers 100 --rate 1000 --rounds 5</c></example>
internal static class PubSubBench
{
    private const int PayloadLength = 64;

    public static async Task RunAsync(string[] args, string configuration)
    {
        string Get(string name, string fallback) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var subscribers = int.Parse(Get("--subscribers", "100"));
        var rate = int.Parse(Get("--rate", "1000"));
        var duration = TimeSpan.FromSeconds(double.Parse(Get("--duration", "5")));
        var rounds = int.Parse(Get("--rounds", "5"));
        var silos = int.Parse(Get("--silos", "1"));

        using var redis = await ServerProcess.StartRedisAsync();
        using var gateway = await ServerProcess.StartGatewayClusterAsync(configuration, silos);
        if (args.Contains("--throughput"))
        {
            await FanOutBench.PublishThroughputAsync(redis, gateway, silos, subscribers, rounds, int.Parse(Get("--requests", "100000")));
            return;
        }

        // The RESP listener's port is the sample's 6380 moved by each silo's PortOffset (20000, and 21000 for a second).
        // --all-on-first: every subscriber on the first silo, the others in the cluster with nothing to deliver (what a
        // silo costs for taking part, apart from delivering).
        var gatewayResp = args.Contains("--all-on-first") ? FanOutBench.RespEndPoints(1) : FanOutBench.RespEndPoints(silos);
        var servers = new (string Name, ServerProcess Process, IPEndPoint[] EndPoints)[]
        {
            ("redis-server", redis, [redis.EndPoint]),
            ("gateway", gateway, gatewayResp),
        };

        Console.WriteLine($"pub/sub fan-out: {subscribers} subscribers on one channel{(silos > 1 ? $" split over {silos} silos" : "")}, one publisher at {rate} messages/s (open loop), "
            + $"{PayloadLength} B payloads, {rounds} rounds of {duration.TotalSeconds:0} s per server, alternating; medians; {Environment.ProcessorCount} cores shared by client and servers");
        Console.WriteLine($"redis-server pid {redis.Pid}; gateway pids {gateway.Pids}");

        // Warm-up: one short round each, not counted.
        foreach (var server in servers)
        {
            await RoundAsync(server.EndPoints, server.Process, subscribers, rate, TimeSpan.FromSeconds(1), "warmup");
        }

        var results = servers.ToDictionary(s => s.Name, _ => new List<Result>());
        for (var round = 0; round < rounds; round++)
        {
            foreach (var server in round % 2 == 0 ? servers : servers.Reverse())
            {
                results[server.Name].Add(await RoundAsync(server.EndPoints, server.Process, subscribers, rate, duration, $"bench-{round}"));
            }
        }

        Console.WriteLine();
        Console.WriteLine("| server | deliveries/s | server CPU µs/delivery | p50 latency µs | p99 latency µs | CPU vs redis | p99 vs redis | lost or out of order |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        var reference = Median(results["redis-server"]);
        foreach (var (name, runs) in results)
        {
            var m = Median(runs);
            Console.WriteLine($"| {name} | {m.DeliveriesPerSecond:N0} | {m.CpuMicrosPerDelivery:0.00} | {m.P50Micros:N0} | {m.P99Micros:N0} | "
                + $"{m.CpuMicrosPerDelivery / reference.CpuMicrosPerDelivery:0.00}× | {m.P99Micros / reference.P99Micros:0.00}× | {runs.Sum(r => r.Faults)} |");
        }
    }

    private static Result Median(List<Result> runs)
    {
        static double Mid(IEnumerable<double> values)
        {
            var sorted = values.Order().ToArray();
            return sorted[sorted.Length / 2];
        }

        return new Result(Mid(runs.Select(r => r.DeliveriesPerSecond)), Mid(runs.Select(r => r.CpuMicrosPerDelivery)), Mid(runs.Select(r => r.P50Micros)), Mid(runs.Select(r => r.P99Micros)), runs.Sum(r => r.Faults));
    }

    private static async Task<Result> RoundAsync(IPEndPoint[] endPoints, ServerProcess server, int count, int rate, TimeSpan duration, string label)
    {
        var channel = $"{label}-{Guid.NewGuid():N}"[..24];
        var messages = (int)(rate * duration.TotalSeconds);
        var push = PushLength(channel);
        var subscribers = new List<Subscriber>();
        for (var i = 0; i < count; i++)
        {
            subscribers.Add(await Subscriber.ConnectAsync(endPoints[i % endPoints.Length], channel, messages, push));
        }

        using var publisher = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await publisher.ConnectAsync(endPoints[0]);
        var replies = DrainAsync(publisher, messages);

        var cpuBefore = server.CpuTime;
        var clock = Stopwatch.StartNew();
        var interval = TimeSpan.FromSeconds(1.0 / rate);
        for (var n = 0; n < messages; n++)
        {
            // Open loop: wait for this message's slot, then send, whether or not earlier replies came.
            var due = interval * n;
            if (due - clock.Elapsed is { } wait && wait > TimeSpan.FromMilliseconds(1))
            {
                await Task.Delay(wait);
            }

            while (clock.Elapsed < due)
            {
                Thread.SpinWait(50);
            }

            var payload = $"{n:D10} {Stopwatch.GetTimestamp():D20} ".PadRight(PayloadLength, 'x');
            await publisher.SendAsync(Encoding.ASCII.GetBytes($"*3\r\n$7\r\nPUBLISH\r\n${channel.Length}\r\n{channel}\r\n${PayloadLength}\r\n{payload}\r\n"), SocketFlags.None);
        }

        await replies;
        await Task.WhenAll(subscribers.Select(s => s.Done.WaitAsync(TimeSpan.FromSeconds(60))));
        var elapsed = clock.Elapsed;
        var cpu = server.CpuTime - cpuBefore;
        var latencies = subscribers.SelectMany(s => s.Latencies).Order().ToArray();
        var faults = subscribers.Sum(s => s.Faults);
        subscribers.ForEach(s => s.Dispose());
        var deliveries = (double)messages * count;
        return new Result(deliveries / elapsed.TotalSeconds, cpu.TotalMicroseconds / deliveries, latencies[latencies.Length / 2], latencies[(int)(latencies.Length * 0.99)], faults);
    }

    private static int PushLength(string channel) =>
        Encoding.ASCII.GetByteCount($"*3\r\n$7\r\nmessage\r\n${channel.Length}\r\n{channel}\r\n${PayloadLength}\r\n") + PayloadLength + 2;

    /// <summary>Reads the publisher's integer replies until every PUBLISH is answered.</summary>
    private static async Task DrainAsync(Socket socket, int replies)
    {
        var buffer = new byte[64 * 1024];
        var seen = 0;
        while (seen < replies)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
            {
                throw new IOException("the server closed the publisher");
            }

            seen += buffer.AsSpan(0, n).Count((byte)'\n');
        }
    }

    private sealed record Result(double DeliveriesPerSecond, double CpuMicrosPerDelivery, double P50Micros, double P99Micros, int Faults);

    /// <summary>A subscriber: reads fixed-length pushes, checks the sequence, records the latency of every one.</summary>
    private sealed class Subscriber : IDisposable
    {
        private readonly Socket _socket;

        private Subscriber(Socket socket) => _socket = socket;

        public List<double> Latencies { get; } = [];

        public int Faults { get; private set; }

        public Task Done { get; private set; } = Task.CompletedTask;

        public static async Task<Subscriber> ConnectAsync(IPEndPoint endPoint, string channel, int messages, int push)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(endPoint);
            await socket.SendAsync(Encoding.ASCII.GetBytes($"*2\r\n$9\r\nSUBSCRIBE\r\n${channel.Length}\r\n{channel}\r\n"), SocketFlags.None);
            var confirmation = Encoding.ASCII.GetByteCount($"*3\r\n$9\r\nsubscribe\r\n${channel.Length}\r\n{channel}\r\n:1\r\n");
            var buffer = new byte[confirmation];
            for (var read = 0; read < confirmation;)
            {
                read += await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None);
            }

            var subscriber = new Subscriber(socket);
            subscriber.Done = Task.Run(() => subscriber.ReadAsync(messages, push));
            return subscriber;
        }

        private async Task ReadAsync(int messages, int push)
        {
            var buffer = new byte[Math.Max(64 * 1024, push * 4)];
            var held = 0;
            var next = 0;
            while (next < messages)
            {
                var n = await _socket.ReceiveAsync(buffer.AsMemory(held), SocketFlags.None);
                if (n == 0)
                {
                    Faults += messages - next;
                    return;
                }

                held += n;
                var now = Stopwatch.GetTimestamp();
                var offset = 0;
                for (; held - offset >= push; offset += push)
                {
                    var payload = Encoding.ASCII.GetString(buffer, offset + push - PayloadLength - 2, PayloadLength);
                    if (long.Parse(payload.AsSpan(0, 10)) != next)
                    {
                        Faults++;
                    }

                    Latencies.Add(Stopwatch.GetElapsedTime(long.Parse(payload.AsSpan(11, 20)), now).TotalMicroseconds);
                    next++;
                }

                buffer.AsSpan(offset, held - offset).CopyTo(buffer);
                held -= offset;
            }
        }

        public void Dispose() => _socket.Dispose();
    }
}
