using System.Diagnostics;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// Three silo processes of the gateway host on Redis, each in its own network namespace (<see cref="LabCluster"/>), so
/// silo-to-silo traffic can be cut or thinned while every client and Redis still reach every silo: what a connection's
/// client sees when the network, not a process, fails. The silos run with the sample host's membership settings.
/// </summary>
[Collection(NetworkLabCollection.Name)]
public sealed class NetworkFaultTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>
    /// The README's bound for the sample host's settings (ProbeTimeout 2 s, 3 missed probes, MaxProbeTimeout 2 s): a
    /// connection across a cut is closed, and the cut silo has left, within it.
    /// </summary>
    private static readonly TimeSpan CutBound = TimeSpan.FromSeconds(15);

    [SkippableFact]
    public async Task A_partitioned_silo_leaves_the_cluster_every_connection_is_kept_or_closed_within_the_bound_and_it_rejoins_after_the_heal()
    {
        SkipUnlessLab();
        await using var cluster = await LabCluster.StartAsync(output);
        var streams = await cluster.StartStreamsAsync(12);

        // Cut silo 2 from the others (both ways); clients and Redis still reach all three.
        var cut = Stopwatch.GetTimestamp();
        await cluster.Lab.PartitionAsync(2, 0, 1);

        // New clients during the cut, before and after it is detected, on the majority's gateways: all served.
        var newClients = Enumerable.Range(0, 16).Select(async n =>
        {
            await Task.Delay(TimeSpan.FromMilliseconds(n * 500));
            await cluster.EchoOnceAsync(n % 2, $"new {n}");
            return Stopwatch.GetElapsedTime(cut);
        }).ToList();

        // The minority silo learns it was voted out and exits non-zero, for its supervisor to restart it.
        await cluster.Silos[2].Exited.WaitAsync(CutBound + TestTimeouts.Default);
        var left = Stopwatch.GetElapsedTime(cut);
        output.WriteLine($"silo 2 exited with {cluster.Silos[2].ExitCode} after {left.TotalSeconds:0.0} s");
        Assert.NotEqual(0, cluster.Silos[2].ExitCode);
        Assert.True(left < CutBound, $"the cut silo left after {left}");

        // Every stream is accounted for: it kept echoing, or it ended within the bound; none hangs.
        var (kept, ended) = await AccountAsync(streams, cut);
        Assert.NotEmpty(kept);
        Assert.DoesNotContain(kept, s => s.Silo == 2);

        foreach (var served in newClients)
        {
            var at = await served;
            Assert.True(at < CutBound + TimeSpan.FromSeconds(8), $"a new client was served {at} after the cut");
        }

        output.WriteLine($"{kept.Count} streams kept, {ended.Count} closed; {newClients.Count} new clients during the cut served, the last {newClients.Max(c => c.Result).TotalSeconds:0.0} s after it");

        // The heal, and silo 2 started again as its supervisor would: every gateway serves new clients.
        await cluster.Lab.HealAsync();
        var healed = Stopwatch.StartNew();
        await cluster.RestartAsync(2);
        await cluster.Silos[2].WaitForOutputAsync("Cluster membership: 3 active silos");
        await cluster.ServeNewClientsAsync(30, "after the heal", 0, 1, 2);

        output.WriteLine($"every gateway served 30 new clients {healed.Elapsed.TotalSeconds:0.0} s after the heal (silo 2 restarted)");
        foreach (var (_, stream) in kept)
        {
            await stream.WaitForProgressAsync(1024);
        }
    }

    [SkippableFact]
    public async Task A_one_way_cut_ends_as_a_partition_does()
    {
        SkipUnlessLab();
        await using var cluster = await LabCluster.StartAsync(output);
        var streams = await cluster.StartStreamsAsync(8);

        // Only what silo 2 sends to the others is dropped; what they send it still arrives.
        var cut = Stopwatch.GetTimestamp();
        await cluster.Lab.DropAsync(2, 0);
        await cluster.Lab.DropAsync(2, 1);
        await cluster.Silos[2].Exited.WaitAsync(CutBound + TestTimeouts.Default);
        var left = Stopwatch.GetElapsedTime(cut);
        output.WriteLine($"silo 2 exited with {cluster.Silos[2].ExitCode} after {left.TotalSeconds:0.0} s");
        Assert.True(left < CutBound, $"the silo whose sends were dropped left after {left}");
        var (kept, _) = await AccountAsync(streams, cut);
        Assert.DoesNotContain(kept, s => s.Silo == 2);
        await cluster.ServeNewClientsAsync(10, "after", 0, 1);
    }

    [SkippableFact]
    public async Task A_flapping_link_hangs_no_stream_longer_than_the_bound()
    {
        SkipUnlessLab();
        await using var cluster = await LabCluster.StartAsync(output);
        var streams = await cluster.StartStreamsAsync(8);

        // Silo 2's link to the others down for 2 s, up for 2 s, five times.
        var start = Stopwatch.GetTimestamp();
        for (var flap = 0; flap < 5; flap++)
        {
            await cluster.Lab.PartitionAsync(2, 0, 1);
            await Task.Delay(TimeSpan.FromSeconds(2)); // down
            await cluster.Lab.HealAsync();
            await Task.Delay(TimeSpan.FromSeconds(2)); // up
        }

        // Whether or not silo 2 was voted out (the 2 s it is up may carry enough to spare it): every stream either
        // echoes again, its pauses within the bound, or ended — and none waited out Orleans' 30 s response timeout.
        foreach (var (silo, stream) in streams)
        {
            if (stream.EndedTimestamp is null)
            {
                await stream.WaitForProgressAsync(1024);
            }

            Assert.True(stream.LongestPause < CutBound, $"a stream on silo {silo} paused {stream.LongestPause}");
        }

        var ended = streams.Count(s => s.Stream.EndedTimestamp is not null);
        output.WriteLine($"after 5 flaps: silo 2 {(cluster.Silos[2].HasExited ? $"exited ({cluster.Silos[2].ExitCode})" : "still in")}, "
            + $"{streams.Count - ended} streams kept (longest pause {streams.Where(s => s.Stream.EndedTimestamp is null).Select(s => s.Stream.LongestPause).DefaultIfEmpty().Max().TotalSeconds:0.00} s), {ended} closed");
        await cluster.ServeNewClientsAsync(10, "after", 0, 1);
    }

    [SkippableFact]
    public async Task A_cut_shorter_than_detection_resets_nothing_and_loses_nothing()
    {
        SkipUnlessLab();
        await using var cluster = await LabCluster.StartAsync(output);
        var streams = await cluster.StartStreamsAsync(8);

        await cluster.Lab.PartitionAsync(2, 0, 1);
        await Task.Delay(TimeSpan.FromSeconds(2)); // the fault's length: shorter than detection (3 probes of 2 s)
        await cluster.Lab.HealAsync();

        foreach (var (silo, stream) in streams)
        {
            await stream.WaitForProgressAsync(2048);
            Assert.Null(stream.EndedTimestamp);
        }

        Assert.All(cluster.Silos, s => Assert.False(s.HasExited));
        output.WriteLine($"longest pause {streams.Max(s => s.Stream.LongestPause).TotalSeconds:0.00} s over {streams.Count} streams");
        Assert.True(streams.Max(s => s.Stream.LongestPause) < CutBound);
    }

    [SkippableFact]
    public async Task Loss_of_1_and_10_percent_between_silos_resets_no_stream()
    {
        SkipUnlessLab();
        await using var cluster = await LabCluster.StartAsync(output);
        var streams = await cluster.StartStreamsAsync(8);
        foreach (var loss in new[] { 0.01, 0.10 })
        {
            var before = streams.Select(s => s.Stream.RoundTrips.Length).ToArray();
            for (var from = 0; from < 3; from++)
            {
                for (var to = 0; to < 3; to++)
                {
                    if (from != to)
                    {
                        await cluster.Lab.DropAsync(from, to, loss);
                    }
                }
            }

            await Task.Delay(TimeSpan.FromSeconds(15)); // the fault's length
            await cluster.Lab.HealAsync();
            foreach (var (_, stream) in streams)
            {
                await stream.WaitForProgressAsync(1024);
                Assert.Null(stream.EndedTimestamp);
            }

            var during = streams.SelectMany((s, i) => s.Stream.RoundTrips.Skip(before[i])).Order().ToArray();
            output.WriteLine($"{loss:P0} loss for 15 s: {during.Length} round trips, p50 {during[during.Length / 2].TotalMilliseconds:0} ms, p99 {during[(int)(during.Length * 0.99)].TotalMilliseconds:0} ms");
        }

        Assert.All(cluster.Silos, s => Assert.False(s.HasExited));
    }

    [SkippableFact]
    public async Task With_Redis_unreachable_connections_are_served_a_stopping_silo_drains_and_the_cluster_converges_when_it_returns()
    {
        SkipUnlessLab();
        await using var cluster = await LabCluster.StartAsync(output);
        var streams = await cluster.StartStreamsAsync(6);
        var mark = cluster.Silos[0].OutputLength;
        await cluster.Lab.BlockHostPortAsync(cluster.RedisPort);

        // A graceful stop while the store is away: its clients drain (every byte, then EOF), the others keep echoing.
        var stop = Stopwatch.StartNew();
        await cluster.Silos[1].SignalTerminateAsync();
        foreach (var (silo, stream) in streams.Where(s => s.Silo == 1))
        {
            await stream.Completion.WaitAsync(TestTimeouts.Default);
            Assert.True(stream.EndedByServer, $"a stream on the stopping silo was not drained: {stream.Failure?.Message}");
        }

        output.WriteLine($"silo 1's clients drained {stop.Elapsed.TotalSeconds:0.0} s after SIGTERM, without Redis");
        await Task.Delay(TimeSpan.FromSeconds(10)); // the rest of the outage
        foreach (var (silo, stream) in streams.Where(s => s.Silo != 1))
        {
            await stream.WaitForProgressAsync(1024);
        }

        // The store returns: the survivors agree that silo 1 left, and serve new clients.
        await cluster.Lab.HealAsync();
        var back = Stopwatch.StartNew();
        await cluster.Silos[0].WaitForOutputAsync("Cluster membership: 2 active silos", mark);
        output.WriteLine($"silo 0 saw silo 1 leave {back.Elapsed.TotalSeconds:0.0} s after Redis returned");
        await cluster.Silos[1].Exited.WaitAsync(TestTimeouts.Default);
        output.WriteLine($"silo 1 exited with {cluster.Silos[1].ExitCode}, {stop.Elapsed.TotalSeconds:0.0} s after SIGTERM");
        await cluster.ServeNewClientsAsync(10, "after the outage", 0, 2);

        foreach (var (silo, stream) in streams.Where(s => s.Silo != 1))
        {
            Assert.Null(stream.EndedTimestamp);
        }
    }

    private static void SkipUnlessLab()
    {
        Skip.IfNot(RedisServer.Installed, RedisServer.NotInstalled);
        Skip.If(NetworkLab.Unavailable is not null, NetworkLab.Unavailable);
    }

    /// <summary>Waits out the bound after <paramref name="fault"/>; asserts every stream either echoes still or ended within it.</summary>
    private async Task<(List<(int Silo, StreamingEchoClient Stream)> Kept, List<(int Silo, StreamingEchoClient Stream)> Ended)> AccountAsync(
        List<(int Silo, StreamingEchoClient Stream)> streams, long fault)
    {
        foreach (var (_, stream) in streams)
        {
            var remaining = CutBound - Stopwatch.GetElapsedTime(fault);
            if (remaining > TimeSpan.Zero)
            {
                await Task.WhenAny(stream.Completion, Task.Delay(remaining));
            }
        }

        var kept = streams.Where(s => s.Stream.EndedTimestamp is null).ToList();
        var ended = streams.Where(s => s.Stream.EndedTimestamp is not null).ToList();
        foreach (var (silo, stream) in ended)
        {
            var after = Stopwatch.GetElapsedTime(fault, stream.EndedTimestamp!.Value);
            Assert.True(after < CutBound, $"a stream on silo {silo} hung {after} before it ended");
        }

        foreach (var (silo, stream) in kept)
        {
            // Alive now, not stuck: it echoes again.
            await stream.WaitForProgressAsync(1024);
        }

        var closedAt = ended.Select(s => Stopwatch.GetElapsedTime(fault, s.Stream.EndedTimestamp!.Value).TotalSeconds).Order().ToArray();
        output.WriteLine($"{kept.Count} kept (longest pause {(kept.Count > 0 ? kept.Max(s => s.Stream.LongestPause).TotalSeconds : 0):0.00} s), "
            + $"{ended.Count} closed {(closedAt.Length > 0 ? $"{closedAt[0]:0.0}–{closedAt[^1]:0.0} s" : "")} after the fault");
        return (kept, ended);
    }
}

/// <summary>The lab's tests change the machine's forwarding and firewall: one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NetworkLabCollection
{
    public const string Name = "network lab";
}
