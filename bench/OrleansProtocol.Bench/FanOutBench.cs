using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace OrleansProtocol.Bench;

/// <summary>
/// Fan-out at throughput, two ways. <c>--pubsub --throughput</c>: redis-benchmark itself (50 connections, closed loop)
/// PUBLISHes to one channel with S subscribers, against redis-server and the RESP sample alternately; every delivery is
/// counted. <c>--chat</c>: M members of one chat room spread over the silos' gateways; one member speaks, and the time
/// until every other member has each line is measured, one line at a time and in a burst.
/// </summary>
/// <example>
/// <c>dotnet run -c Release --project bench/OrleansProtocol.Bench -- --pubsub --throughput --subscribers 50 --rounds 3</c>;
/// <c>dotnet run -c Release --project bench/OrleansProtocol.Bench -- --chat --members 1000 --silos 3</c>
/// </example>
internal static class FanOutBench
{
    private const string Payload = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// <summary>Each silo's RESP sample: 6380 moved by its PortOffset (20000, 21000, …).</summary>
    public static IPEndPoint[] RespEndPoints(int silos) => [.. Enumerable.Range(0, silos).Select(i => new IPEndPoint(IPAddress.Loopback, 26380 + (1000 * i)))];

    public static async Task PublishThroughputAsync(ServerProcess redis, ServerProcess gateway, int silos, int subscribers, int rounds, int requests)
    {
        Console.WriteLine($"PUBLISH throughput: redis-benchmark -c 50 -n {requests} PUBLISH <channel> <64 B> against {subscribers} subscribers"
            + $"{(silos > 1 ? $" split over {silos} silos (publishers on the first)" : "")}; {rounds} rounds per server, alternating; medians");
        var servers = new (string Name, ServerProcess Process, IPEndPoint[] EndPoints)[] { ("redis-server", redis, [redis.EndPoint]), ("gateway", gateway, RespEndPoints(silos)) };
        var results = servers.ToDictionary(s => s.Name, _ => new List<(double Publishes, double Deliveries, double Cpu, double P99, long Missing)>());
        for (var round = 0; round < rounds; round++)
        {
            foreach (var (name, process, endPoints) in round % 2 == 0 ? servers : servers.Reverse())
            {
                var channel = $"tp-{Guid.NewGuid():N}"[..16];
                var counters = new List<PushCounter>();
                for (var i = 0; i < subscribers; i++)
                {
                    counters.Add(await PushCounter.SubscribeAsync(endPoints[i % endPoints.Length], channel));
                }

                var cpu = process.CpuTime;
                var clock = Stopwatch.StartNew();
                var csv = await RunBenchmarkAsync(endPoints[0], requests, channel);
                var expected = (long)requests * subscribers;
                await Task.WhenAny(Task.WhenAll(counters.Select(c => c.WaitForAsync(requests))), Task.Delay(TimeSpan.FromSeconds(60)));
                var elapsed = clock.Elapsed.TotalSeconds;
                var used = (process.CpuTime - cpu).TotalMicroseconds;
                var got = counters.Sum(c => c.Count);
                counters.ForEach(c => c.Dispose());
                results[name].Add((csv.Rps, got / elapsed, used / got, csv.P99, expected - got));
            }
        }

        Console.WriteLine();
        Console.WriteLine("| server | PUBLISH/s | deliveries/s | server CPU µs/delivery | publish p99 ms | CPU vs redis | PUBLISH/s vs redis | not delivered |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        var reference = results["redis-server"];
        foreach (var (name, runs) in results)
        {
            Console.WriteLine($"| {name} | {Mid(runs, r => r.Publishes):N0} | {Mid(runs, r => r.Deliveries):N0} | {Mid(runs, r => r.Cpu):0.00} | {Mid(runs, r => r.P99):0.00} | "
                + $"{Mid(runs, r => r.Cpu) / Mid(reference, r => r.Cpu):0.00}× | {Mid(runs, r => r.Publishes) / Mid(reference, r => r.Publishes):0.00}× | {runs.Sum(r => r.Missing)} |");
        }
    }

    public static async Task ChatAsync(string[] args, string configuration)
    {
        string Get(string name, string fallback) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var count = int.Parse(Get("--members", "1000"));
        var silos = int.Parse(Get("--silos", "3"));
        var lines = int.Parse(Get("--lines", "200"));
        var burst = int.Parse(Get("--burst", "1000"));

        // --hibernate-after S: the members' grains sleep once the joins are over; lines reach them without waking them.
        var sleepAfter = Get("--hibernate-after", "") is { Length: > 0 } seconds ? TimeSpan.FromSeconds(double.Parse(seconds, CultureInfo.InvariantCulture)) : (TimeSpan?)null;
        if (sleepAfter is { } after)
        {
            ServerProcess.GatewaySettings = [.. ServerProcess.GatewaySettings, "--OrleansProtocol:Listeners:chat:HibernateAfter=" + after.ToString("c", CultureInfo.InvariantCulture)];
        }

        using var gateway = await ServerProcess.StartGatewayClusterAsync(configuration, silos);
        Console.WriteLine($"chat: {count} members in one room over {silos} silos' gateways (pids {gateway.Pids}); one speaker on the first; "
            + $"{lines} lines one at a time, then a burst of {burst}; {Environment.ProcessorCount} cores shared by client and servers");

        var heard = new LineTracker(lines + burst, count - 1);
        var members = new List<ChatReader>();
        var joining = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            members.Add(await ChatReader.JoinAsync(new IPEndPoint(IPAddress.Loopback, 27001 + (1000 * (i % silos))), $"m{i}", heard));
        }

        await Task.WhenAll(members.Select((m, i) => m.WaitForNoticesAsync(count - 1 - i)));
        Console.WriteLine($"{count} joined, every join notice heard, in {joining.Elapsed.TotalSeconds:0.0} s");

        if (sleepAfter is { } wait)
        {
            var clock = Stopwatch.StartNew();
            var asleep = await gateway.WaitForHibernatedAsync(count, wait + TimeSpan.FromSeconds(120));
            Console.WriteLine($"{asleep:N0} of {count:N0} members hibernated, {clock.Elapsed.TotalSeconds:0.0} s after the last join notice");
        }

        var speaker = members[0];

        // One at a time: the next line goes when every other member has the last.
        var perLine = new List<double>();
        for (var n = 0; n < lines; n++)
        {
            var sent = Stopwatch.GetTimestamp();
            await speaker.SayAsync($"line {n}");
            perLine.Add(Stopwatch.GetElapsedTime(sent, await heard.AllHaveAsync(n)).TotalMicroseconds);
        }

        perLine.Sort();
        Console.WriteLine($"one line at a time, until all {count - 1} others have it: p50 {perLine[perLine.Count / 2] / 1000:0.00} ms, p99 {perLine[(int)(perLine.Count * 0.99)] / 1000:0.00} ms");

        // A burst: every line written at once; until the last member has the last line.
        var cpu = gateway.CpuTime;
        var started = Stopwatch.GetTimestamp();
        await speaker.SayAsync(string.Join("\n", Enumerable.Range(lines, burst).Select(n => $"line {n}")));
        var elapsed = Stopwatch.GetElapsedTime(started, await heard.AllHaveAsync(lines + burst - 1));
        var deliveries = (double)burst * (count - 1);
        Console.WriteLine($"a burst of {burst} lines: all {count - 1} others had every line in {elapsed.TotalMilliseconds:0} ms: "
            + $"{elapsed.TotalMicroseconds / burst:0} µs per line, {deliveries / elapsed.TotalSeconds:N0} deliveries/s, {(gateway.CpuTime - cpu).TotalMicroseconds / deliveries:0.00} µs server CPU per delivery");
        Console.WriteLine($"lines missing or out of order: {members.Sum(m => m.Faults)}");
        if (sleepAfter is not null)
        {
            // Only the speaker's grain woke (for its own lines); every other member heard them asleep.
            Console.WriteLine($"hibernated after the lines: {(await Task.WhenAll(gateway.Chain.Select(g => g.ConnectionsAsync()))).Sum(c => c.Hibernated):N0}");
        }

        members.ForEach(m => m.Dispose());
    }

    /// <summary>For each numbered line, how many members still lack it, and when the last one got it.</summary>
    private sealed class LineTracker(int lines, int members)
    {
        private readonly int[] _remaining = [.. Enumerable.Repeat(members, lines)];
        private readonly TaskCompletionSource<long>[] _done = [.. Enumerable.Range(0, lines).Select(_ => new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously))];

        public void Heard(int line, long at)
        {
            if (line < _remaining.Length && Interlocked.Decrement(ref _remaining[line]) == 0)
            {
                _done[line].TrySetResult(at);
            }
        }

        /// <summary>The timestamp at which the last member got <paramref name="line"/>.</summary>
        public Task<long> AllHaveAsync(int line) => _done[line].Task.WaitAsync(TimeSpan.FromSeconds(120));
    }

    private static double Mid<T>(List<T> runs, Func<T, double> value)
    {
        var sorted = runs.Select(value).Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    private static async Task<(double Rps, double P99)> RunBenchmarkAsync(IPEndPoint server, int requests, string channel)
    {
        var start = new ProcessStartInfo("redis-benchmark") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-h", server.Address.ToString(), "-p", server.Port.ToString(CultureInfo.InvariantCulture), "-c", "50", "-n", requests.ToString(CultureInfo.InvariantCulture), "--csv", "PUBLISH", channel, Payload })
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();

        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        var row = output.Split('\n').Last(l => l.StartsWith("\"PUBLISH", StringComparison.Ordinal)).Split(',').Select(f => f.Trim('"')).ToArray();
        return (double.Parse(row[1], CultureInfo.InvariantCulture), double.Parse(row[6], CultureInfo.InvariantCulture));
    }

    /// <summary>A subscriber that only counts its pushes (all of one length).</summary>
    private sealed class PushCounter : IDisposable
    {
        private readonly Socket _socket;
        private long _count;

        private PushCounter(Socket socket) => _socket = socket;

        public long Count => Interlocked.Read(ref _count);

        public static async Task<PushCounter> SubscribeAsync(IPEndPoint endPoint, string channel)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(endPoint);
            await socket.SendAsync(Encoding.ASCII.GetBytes($"*2\r\n$9\r\nSUBSCRIBE\r\n${channel.Length}\r\n{channel}\r\n"), SocketFlags.None);
            var confirmation = new byte[Encoding.ASCII.GetByteCount($"*3\r\n$9\r\nsubscribe\r\n${channel.Length}\r\n{channel}\r\n:1\r\n")];
            for (var read = 0; read < confirmation.Length;)
            {
                read += await socket.ReceiveAsync(confirmation.AsMemory(read), SocketFlags.None);
            }

            var counter = new PushCounter(socket);
            var push = Encoding.ASCII.GetByteCount($"*3\r\n$7\r\nmessage\r\n${channel.Length}\r\n{channel}\r\n${Payload.Length}\r\n{Payload}\r\n");
            _ = Task.Run(() => counter.ReadAsync(push));
            return counter;
        }

        public async Task WaitForAsync(long count)
        {
            while (Count < count)
            {
                await Task.Delay(10);
            }
        }

        private async Task ReadAsync(int push)
        {
            var buffer = new byte[64 * 1024];
            long bytes = 0;
            try
            {
                while (await _socket.ReceiveAsync(buffer, SocketFlags.None) is var n and > 0)
                {
                    bytes += n;
                    Interlocked.Exchange(ref _count, bytes / push);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        }

        public void Dispose() => _socket.Dispose();
    }

    /// <summary>A chat member: reads every line, counts the join notices and the speaker's numbered lines (checking their order).</summary>
    private sealed class ChatReader : IDisposable
    {
        private readonly Socket _socket;
        private int _notices;
        private int _lines;

        private readonly LineTracker _heard;

        private ChatReader(Socket socket, LineTracker heard) => (_socket, _heard) = (socket, heard);

        public int Faults { get; private set; }

        public static async Task<ChatReader> JoinAsync(IPEndPoint endPoint, string nick, LineTracker heard)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(endPoint);
            var member = new ChatReader(socket, heard);
            var joined = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _ = Task.Run(() => member.ReadAsync(joined));
            await socket.SendAsync(Encoding.ASCII.GetBytes($"/nick {nick}\n/join bench\n"), SocketFlags.None);
            await joined.Task.WaitAsync(TimeSpan.FromSeconds(30));
            return member;
        }

        public Task SayAsync(string text) => _socket.SendAsync(Encoding.ASCII.GetBytes(text + "\n").AsMemory(), SocketFlags.None).AsTask();

        public Task WaitForNoticesAsync(int count) => Until(() => Volatile.Read(ref _notices) >= count);

        private static async Task Until(Func<bool> done)
        {
            var deadline = Stopwatch.StartNew();
            while (!done())
            {
                if (deadline.Elapsed > TimeSpan.FromSeconds(120))
                {
                    throw new TimeoutException("a chat member did not hear everything in 120 s");
                }

                await Task.Yield();
                if (!done())
                {
                    await Task.Delay(1);
                }
            }
        }

        private async Task ReadAsync(TaskCompletionSource joined)
        {
            using var stream = new NetworkStream(_socket, ownsSocket: false);
            using var reader = new StreamReader(stream, Encoding.ASCII);
            try
            {
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (line.StartsWith("<", StringComparison.Ordinal))
                    {
                        // "<m0> line N"
                        if (line[(line.IndexOf("> line ", StringComparison.Ordinal) + 7)..] != _lines.ToString(CultureInfo.InvariantCulture))
                        {
                            Faults++;
                        }

                        _heard.Heard(_lines, Stopwatch.GetTimestamp());
                        _lines++;
                    }
                    else if (line.StartsWith("* joined ", StringComparison.Ordinal))
                    {
                        joined.TrySetResult();
                    }
                    else if (line.EndsWith(" joined", StringComparison.Ordinal))
                    {
                        Volatile.Write(ref _notices, _notices + 1);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
            }
        }

        public void Dispose() => _socket.Dispose();
    }
}
