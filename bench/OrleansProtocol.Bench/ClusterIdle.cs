using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace OrleansProtocol.Bench;

/// <summary>
/// <c>--idle-cluster</c>: S gateway silos in one cluster, each holding N idle echo connections that hibernate; the
/// resident set of every silo before and after, the opening time, and every connection's first echo after the silence.
/// A process may open 20,000 files here, so each silo's connections are held by a child bench process of its own
/// (<c>--hold ENDPOINT COUNT NETWORK</c>), driven over its standard input and output.
/// </summary>
/// <example>
/// <c>dotnet run -c Release --no-build --project bench/OrleansProtocol.Bench -- --idle-cluster --silos 5 --per-silo 18000</c>
/// </example>
internal static class ClusterIdle
{
    public static async Task RunAsync(string[] args, string configuration)
    {
        string Get(string name, string fallback) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var silos = int.Parse(Get("--silos", "5"), CultureInfo.InvariantCulture);
        var perSilo = int.Parse(Get("--per-silo", "18000"), CultureInfo.InvariantCulture);
        var sleepAfter = TimeSpan.FromSeconds(double.Parse(Get("--hibernate-after", "5"), CultureInfo.InvariantCulture));
        var settle = TimeSpan.FromSeconds(double.Parse(Get("--settle", "20"), CultureInfo.InvariantCulture));
        var limit = (perSilo + 1000).ToString(CultureInfo.InvariantCulture);
        ServerProcess.GatewaySettings =
        [
            .. ServerProcess.GatewaySettings,
            "--OrleansProtocol:Listeners:echo:MaxConnections=" + limit,
            "--OrleansProtocol:MaxConnections=" + limit,
            "--OrleansProtocol:Listeners:echo:HibernateAfter=" + sleepAfter.ToString("c", CultureInfo.InvariantCulture),
        ];

        using var cluster = await ServerProcess.StartGatewayClusterAsync(configuration, silos);
        var gateways = cluster.Chain.ToArray();
        Console.WriteLine($"{silos} silos (pids {cluster.Pids}), {perSilo:N0} echo connections held on each by a process of its own, each after one 16 B round trip; "
            + $"HibernateAfter {sleepAfter.TotalSeconds:0} s; readings {settle.TotalSeconds:0} s after the last opened; {Environment.ProcessorCount} cores shared by all");

        // Warm each silo's paths (JIT, pools, the grain class) before the first reading.
        foreach (var gateway in gateways)
        {
            IdleMemory.Close(await IdleMemory.OpenAsync(gateway.EndPoint, 16, 0));
        }

        await Task.Delay(TimeSpan.FromSeconds(3));
        var before = gateways.Select(g => g.ResidentBytes).ToArray();

        var opening = Stopwatch.StartNew();
        var holders = gateways.Select((g, i) => Holder.Start(g.EndPoint, perSilo, (byte)(i + 1))).ToArray();
        var opened = await Task.WhenAll(holders.Select(h => h.ReadAsync()));
        var openedIn = opening.Elapsed;
        var total = (long)perSilo * silos;
        var asleep = await cluster.WaitForHibernatedAsync(total, sleepAfter + TimeSpan.FromSeconds(120));
        await Task.Delay(settle);
        var after = gateways.Select(g => g.ResidentBytes).ToArray();
        Console.WriteLine($"opened {total:N0} in {openedIn.TotalSeconds:0.0} s ({total / openedIn.TotalSeconds:N0} per second; each holder: {string.Join(", ", opened)} s); hibernated {asleep:N0}");
        Console.WriteLine();
        Console.WriteLine("| silo | RSS before MiB | RSS with connections MiB | KiB per connection |");
        Console.WriteLine("|---|---:|---:|---:|");
        for (var i = 0; i < silos; i++)
        {
            Console.WriteLine($"| {i} | {before[i] / 1048576.0:N1} | {after[i] / 1048576.0:N1} | {(after[i] - before[i]) / 1024.0 / perSilo:N1} |");
        }

        Console.WriteLine($"| all | {before.Sum() / 1048576.0:N1} | {after.Sum() / 1048576.0:N1} | {(after.Sum() - before.Sum()) / 1024.0 / total:N1} |");

        // Every connection echoes again, all holders at once: each grain wakes for its first.
        foreach (var holder in holders)
        {
            holder.Tell("echo");
        }

        var echoed = await Task.WhenAll(holders.Select(h => h.ReadAsync()));
        Console.WriteLine();
        Console.WriteLine($"every connection echoed again (per holder: first p50/p99 µs, next p50/p99 µs): {string.Join("; ", echoed)}");
        foreach (var holder in holders)
        {
            holder.Dispose();
        }
    }

    /// <summary>The child's side: open, report, echo each on request, exit on end of input.</summary>
    public static async Task HoldAsync(string[] args)
    {
        var server = IPEndPoint.Parse(args[1]);
        var count = int.Parse(args[2], CultureInfo.InvariantCulture);
        var network = byte.Parse(args[3], CultureInfo.InvariantCulture);
        var clock = Stopwatch.StartNew();
        var sockets = await IdleMemory.OpenAsync(server, count, network);
        Console.WriteLine($"{clock.Elapsed.TotalSeconds:0.0}");
        while (Console.ReadLine() is "echo")
        {
            var (first, second) = await IdleMemory.EchoEachAsync(sockets);
            Console.WriteLine($"{IdleMemory.Percentile(first, 0.5):N0}/{IdleMemory.Percentile(first, 0.99):N0}, {IdleMemory.Percentile(second, 0.5):N0}/{IdleMemory.Percentile(second, 0.99):N0}");
        }

        IdleMemory.Close(sockets);
    }

    private sealed class Holder : IDisposable
    {
        private readonly Process _process;

        private Holder(Process process) => _process = process;

        public static Holder Start(IPEndPoint server, int count, byte network)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardInput = true };
            foreach (var argument in new[] { typeof(Program).Assembly.Location, "--hold", server.ToString(), $"{count}", $"{network}" })
            {
                start.ArgumentList.Add(argument);
            }

            return new Holder(Process.Start(start)!);
        }

        /// <summary>The child's next line; its failure (an exception's first line) ends the run.</summary>
        public async Task<string> ReadAsync()
        {
            var line = await _process.StandardOutput.ReadLineAsync();
            return line is not null && !line.StartsWith("Unhandled", StringComparison.Ordinal)
                ? line
                : throw new IOException($"a holder (pid {_process.Id}) failed: {line ?? "it exited"}");
        }

        public void Tell(string command) => _process.StandardInput.WriteLine(command);

        public void Dispose()
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(TimeSpan.FromSeconds(30)))
            {
                _process.Kill();
            }

            _process.Dispose();
        }
    }
}
