using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace OrleansProtocol.Bench;

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
    internal static async Task<(List<double> First, List<double> Second)> EchoEachAsync(List<Socket> sockets)
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

    internal static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))];
    }

    internal static long OpenFileLimit() =>
        File.ReadLines("/proc/self/limits").Where(l => l.StartsWith("Max open files", StringComparison.Ordinal))
            .Select(l => long.Parse(l["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture))
            .DefaultIfEmpty(long.MaxValue).First();

    private static Task<List<Socket>> OpenAsync(ServerProcess server, int count) => OpenAsync(server.EndPoint, count, 0);

    /// <summary>
    /// <paramref name="count"/> connections to <paramref name="server"/>, 100 at a time, each after one 16 B round trip;
    /// from 127.<paramref name="network"/>.0.x, so processes opening at once use different source addresses.
    /// </summary>
    internal static async Task<List<Socket>> OpenAsync(IPEndPoint server, int count, byte network)
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
                socket.Bind(new IPEndPoint(new IPAddress([127, network, 0, (byte)(1 + batch / 20_000)]), 0));
                await socket.ConnectAsync(server);
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

    internal static void Close(List<Socket> sockets)
    {
        foreach (var socket in sockets)
        {
            socket.Dispose();
        }
    }
}
