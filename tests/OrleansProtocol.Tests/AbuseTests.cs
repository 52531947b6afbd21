using System.Net.Sockets;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;
using Xunit.Abstractions;

namespace OrleansProtocol.Tests;

/// <summary>
/// Abusive peers over real loopback sockets, at scale: slowloris, a connection flood, silent peers, slow and
/// non-reading peers. Each asserts a healthy client is served meanwhile, and the limit's metric.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AbuseTests(GatewayClusterFixture fixture, ITestOutputHelper output)
{
    // How often a slowloris peer sends its next byte: "one byte every few seconds".
    private static readonly TimeSpan TricklePace = TimeSpan.FromSeconds(2);

    private MetricCollector<T> Collect<T>(string instrument)
        where T : struct => fixture.Collect<T>(instrument);

    private static int ClosedWith(MetricCollector<double> durations, string listener, ConnectionCloseReason reason) =>
        durations.GetMeasurementSnapshot().Count(m =>
            (string?)m.Tags["orleansprotocol.listener"] == listener && (string?)m.Tags["orleansprotocol.close_reason"] == reason.ToString());

    private async Task<ProtocolServer> CreateAsync<TGrain>(string name, Action<ProtocolListenerOptions> configure, TimeProvider? time = null)
        where TGrain : IProtocolGrain =>
        await fixture.Gateway.CreateServerOnClockAsync<TGrain>(name, o =>
        {
            o.Port = 0;
            configure(o);
        }, time);

    [Fact]
    public async Task Slowloris_500_connections_trickling_an_incomplete_line_are_cut_by_the_receive_rate_while_others_are_served()
    {
        using var durations = Collect<double>("orleansprotocol.connection.duration");
        var name = $"slowloris-{Guid.NewGuid():N}";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await CreateAsync<FrameEchoGrain>(name, o =>
        {
            o.Framing = new FramingOptions { Kind = FramingKind.Line };
            o.MinReceiveDataRate = 50;
            o.MinReceiveDataRateGracePeriod = TimeSpan.FromSeconds(5);

            // On a clock that jumps, a reply read by the client may not be counted as sent yet.
            o.MinSendDataRate = null;
        }, time);

        var slow = new List<TestClient>();
        for (var i = 0; i < 500; i++)
        {
            slow.Add(await TestClient.ConnectAsync(server.EndPoints[0]));
        }

        // A line-speaking client on the same listener is served throughout (whole lines are not incomplete frames).
        await using var fast = await TestClient.ConnectAsync(server.EndPoints[0]);

        await fast.SendAsync("hello\n");
        Assert.Equal("hello", await fast.ReadLineAsync());

        // Every slow peer sends one byte of a line that never ends, every TricklePace on the server's clock: 0.5 bytes/s
        // against a minimum of 50 after a 5 s grace. Each round waits until the gateway holds every peer's bytes and
        // waits on it for more, so the clock moves over exactly what was sent. The first two rounds fall within the
        // grace (a peer cut there would not reach the next round's count); the third ends it for all 500.
        var cut = Task.WhenAll(slow.Select(async client =>
        {
            try
            {
                Assert.Empty(await client.ReadToEndAsync());
            }
            catch (SocketException)
            {
            }
        }));
        var trickle = Task.Run(async () =>
        {
            for (var round = 1; round <= 3; round++)
            {
                foreach (var client in slow)
                {
                    await client.SendAsync("x"u8.ToArray());
                }

                await Poll.UntilAsync(
                    () => server.Connections.Count(c => c.AwaitedIncompleteFrame == round) == slow.Count,
                    () => $"round {round}: {server.Connections.Count(c => c.AwaitedIncompleteFrame == round)} of {slow.Count} peers' bytes held");
                time.Advance(TricklePace, server);
            }
        });

        var rounds = await fixture.HealthyClientAsync(Task.WhenAll(cut, trickle));
        await fast.SendAsync("still here\n");
        Assert.Equal("still here", await fast.ReadLineAsync());
        output.WriteLine($"500 slow peers cut; the healthy client made {rounds} round trips meanwhile.");

        foreach (var client in slow)
        {
            await client.DisposeAsync();
        }

        await fast.DisposeAsync();
        await server.DisposeAsync();
        Assert.Equal(500, ClosedWith(durations, name, ConnectionCloseReason.ReceiveRateTooLow));
        Assert.Equal(0, ClosedWith(durations, name, ConnectionCloseReason.IdleTimeout));

        // One warning for the first cut (the next would be the 1,000th); the rest are Debug lines: an attack does not flood the log.
        var warning = Assert.Single(fixture.Logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains(name));
        Assert.Contains("ReceiveRateTooLow", warning.Message);
        Assert.Contains("(1 so far on this listener)", warning.Message);
    }

    [Fact]
    public async Task A_silent_peer_is_closed_at_the_first_data_deadline_and_one_that_spoke_is_not()
    {
        using var durations = Collect<double>("orleansprotocol.connection.duration");
        var name = $"first-data-{Guid.NewGuid():N}";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await CreateAsync<ScriptGrain>(name, o =>
        {
            o.FirstDataTimeout = TimeSpan.FromHours(1);

            // On a clock that jumps, a reply read by the client may not be counted as sent yet.
            o.MinSendDataRate = null;
        }, time);

        // The talker connects first: were the deadline applied to it, it would run out no later than the silent one's.
        await using var talker = await TestClient.ConnectAsync(server.EndPoints[0]);
        var talkerRecord = await fixture.Recorder.ForClientAsync(talker.LocalEndPoint);
        await talker.SendAsync("echo hi\n");
        Assert.Equal("hi", await talker.ReadLineAsync());
        await using var silent = await TestClient.ConnectAsync(server.EndPoints[0]);
        var silentRecord = await fixture.Recorder.ForClientAsync(silent.LocalEndPoint);

        // The hour passes on the server's clock while a healthy client is served on the fixture's.
        time.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1), server);
        var closed = fixture.Recorder.WaitUntilAsync(() => silentRecord.Count("CL") == 1);
        await fixture.HealthyClientAsync(closed);
        Assert.Equal(ConnectionCloseReason.FirstDataTimeout, Assert.IsType<ConnectionClosedException>(silentRecord.LostException).Reason);
        Assert.Empty(await silent.ReadToEndAsync());
        Assert.Equal(0, talkerRecord.Count("CL"));
        await talker.SendAsync("echo still\n");
        Assert.Equal("still", await talker.ReadLineAsync());

        await talker.DisposeAsync();
        await server.DisposeAsync();
        Assert.Equal(1, ClosedWith(durations, name, ConnectionCloseReason.FirstDataTimeout));
    }

    /// <summary>
    /// Moves the server's clock until the connection is closed. While the kernel's buffers still take bytes the writer
    /// makes progress and is not cut; once they are full, two checks without progress cut it.
    /// </summary>
    private Task StallAsync(FakeTimeProvider time, ProtocolServer server, ConnectionRecord record) =>
        time.AdvanceUntilAsync(server, fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1));

    [Fact]
    public async Task A_peer_that_stops_reading_while_its_protocol_honours_PauseWriting_is_aborted_at_the_minimum_send_rate()
    {
        using var durations = Collect<double>("orleansprotocol.connection.duration");
        var name = $"send-rate-{Guid.NewGuid():N}";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await CreateAsync<ScriptGrain>(name, o =>
        {
            o.MinSendDataRate = 256 * 1024;
            o.MinSendDataRateGracePeriod = TimeSpan.FromSeconds(1);
            o.MaxWriteBufferSize = 64 * 1024 * 1024;
        }, time);
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        // The protocol stops at PauseWriting, so the hard cap is never reached: only the rate ends the stall.
        await client.SendAsync($"flood {256 * 1024 * 1024}\n");
        await fixture.HealthyClientAsync(StallAsync(time, server, record));
        Assert.Equal(ConnectionCloseReason.SendRateTooLow, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
        Assert.Contains("PW", record.Events);
        await client.AssertDroppedAsync();

        await server.DisposeAsync();
        Assert.Equal(1, ClosedWith(durations, name, ConnectionCloseReason.SendRateTooLow));
    }

    [Fact]
    public async Task A_close_waiting_to_flush_to_a_peer_that_does_not_read_is_aborted_at_the_minimum_send_rate()
    {
        using var durations = Collect<double>("orleansprotocol.connection.duration");
        var name = $"close-flush-{Guid.NewGuid():N}";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await CreateAsync<ScriptGrain>(name, o =>
        {
            o.MinSendDataRate = 4 * 1024 * 1024;
            o.MinSendDataRateGracePeriod = TimeSpan.FromSeconds(1);
            o.MaxWriteBufferSize = 64 * 1024 * 1024;
        }, time);
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        // 8 MiB, then Close(): more than the kernel's buffers take, so the close waits on a flush the peer never reads.
        await client.SendAsync($"write-close {8 * 1024 * 1024}\n");
        await fixture.HealthyClientAsync(StallAsync(time, server, record));
        Assert.Equal(ConnectionCloseReason.SendRateTooLow, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);

        await server.DisposeAsync();
        Assert.Equal(1, ClosedWith(durations, name, ConnectionCloseReason.SendRateTooLow));
    }

    [Fact]
    public async Task A_peer_that_never_reads_while_its_grain_streams_100_MiB_gets_PauseWriting_then_an_abort_at_the_cap_with_memory_bounded()
    {
        using var durations = Collect<double>("orleansprotocol.connection.duration");
        using var paused = Collect<long>("orleansprotocol.paused_connections");
        const long cap = 1024 * 1024;
        const long intended = 100L * 1024 * 1024;
        var name = $"non-reader-{Guid.NewGuid():N}";
        await using var server = await CreateAsync<ScriptGrain>(name, o =>
        {
            o.MaxWriteBufferSize = cap;
            o.MinSendDataRate = null;
        });
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        var gatewaySide = fixture.TryGetGatewayConnection(record.Connection.ConnectionId)!;

        // 64 KiB per timer tick, PauseWriting ignored; the client reads nothing.
        await client.SendAsync($"stream {intended}\n");
        await fixture.HealthyClientAsync(fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1));

        var events = record.Events.ToList();
        Assert.True(events.IndexOf("PW") >= 0 && events.IndexOf("PW") < events.IndexOf("CL"), string.Join(",", events));
        Assert.Equal(ConnectionCloseReason.WriteBufferLimit, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);

        // Memory: the gateway never held more than the cap plus one write; the grain's transport never more than the
        // cap; the stream stopped long before its 100 MiB (what it wrote is the kernel's buffers and the cap).
        output.WriteLine($"streamed {record.StreamedBytes} bytes; gateway peak {gatewaySide.PeakWriteBufferSize}; grain peak {record.PeakStreamBuffer}");
        Assert.InRange(gatewaySide.PeakWriteBufferSize, 1, cap + 64 * 1024);
        Assert.InRange(record.PeakStreamBuffer, 1, cap);
        Assert.InRange(record.StreamedBytes, cap, 32L * 1024 * 1024);
        await client.AssertDroppedAsync();

        await server.DisposeAsync();
        Assert.Equal(1, ClosedWith(durations, name, ConnectionCloseReason.WriteBufferLimit));
        var writePauses = paused.GetMeasurementSnapshot().Where(m =>
            (string?)m.Tags["orleansprotocol.listener"] == name && (string?)m.Tags["orleansprotocol.direction"] == "write").ToList();
        // Paused at least once (the kernel's send buffer may grow and take a buffer's worth, resuming it for a while),
        // and the paused gauge is back to zero after the abort.
        Assert.InRange(writePauses.Count(m => m.Value == 1), 1, int.MaxValue);
        Assert.Equal(0, writePauses.Sum(m => m.Value));
    }

    [Fact]
    public async Task A_2_GiB_length_prefix_is_closed_with_FrameTooLarge_without_allocating_the_body()
    {
        using var durations = Collect<double>("orleansprotocol.connection.duration");
        using var framesOver = Collect<long>("orleansprotocol.frames_over_limit");
        var name = $"huge-prefix-{Guid.NewGuid():N}";
        await using var server = await CreateAsync<FrameEchoGrain>(name, o =>
            o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, PrefixLength = 4 });
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        var allocatedBefore = GC.GetTotalAllocatedBytes();
        await client.SendAsync(new byte[] { 0x80, 0x00, 0x00, 0x00, 1, 2, 3 });
        Assert.Empty(await client.ReadToEndAsync());
        await fixture.HealthyClientAsync(fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1));
        var allocated = GC.GetTotalAllocatedBytes() - allocatedBefore;

        // Everything this process allocated meanwhile (the gateway, the grain, this test, other tests) is far below 2 GiB.
        Assert.InRange(allocated, 0, 256L * 1024 * 1024);
        Assert.Equal(ConnectionCloseReason.FrameTooLarge, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
        Assert.Contains("2147483648", record.LostException!.Message);
        await server.DisposeAsync();
        Assert.Equal(1, ClosedWith(durations, name, ConnectionCloseReason.FrameTooLarge));
        Assert.Equal(1, framesOver.GetMeasurementSnapshot().Where(m => (string?)m.Tags["orleansprotocol.listener"] == name).Sum(m => m.Value));
    }

    [Fact]
    public async Task A_flood_of_5000_connections_over_a_limit_of_1000_is_refused_exactly_while_the_first_1000_and_a_healthy_client_work()
    {
        using var rejected = Collect<long>("orleansprotocol.rejected_connections");
        var name = $"flood-{Guid.NewGuid():N}";
        await using var server = await CreateAsync<EchoGrain>(name, o =>
        {
            o.MaxConnections = 1_000;
            o.MaxConnectionsPerAddress = null;
        });

        var admitted = new TestClient[1_000];
        for (var batch = 0; batch < admitted.Length; batch += 50)
        {
            await Task.WhenAll(Enumerable.Range(batch, 50).Select(async i =>
            {
                admitted[i] = await TestClient.ConnectAsync(server.EndPoints[0]);
                await admitted[i].SendAsync($"in {i}\n");
                Assert.Equal($"in {i}", await admitted[i].ReadLineAsync());
            }));
        }

        // 4,000 more, 100 at a time, while a healthy client (on another listener) keeps talking.
        var flood = Task.Run(async () =>
        {
            for (var batch = 0; batch < 4_000; batch += 100)
            {
                await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => TestClient.AssertDroppedAsync(server.EndPoints[0])));
            }
        });
        var rounds = await fixture.HealthyClientAsync(flood);
        await flood;
        output.WriteLine($"4,000 refused; the healthy client made {rounds} round trips meanwhile.");

        Assert.Equal(4_000, server.RefusedConnections);
        Assert.Equal(
            ["1", "1000", "2000", "3000", "4000"],
            fixture.Logs.Entries.Where(e => e.Level == LogLevel.Warning && e.Message.Contains(name))
                .Select(e => System.Text.RegularExpressions.Regex.Match(e.Message, @"\((\d+) refused so far\)").Groups[1].Value).Order().ToArray());
        Assert.Equal(4_000, rejected.GetMeasurementSnapshot()
            .Where(m => (string?)m.Tags["orleansprotocol.listener"] == name && (string?)m.Tags["orleansprotocol.reason"] == "listener_limit")
            .Sum(m => m.Value));
        await Task.WhenAll(admitted.Select(async (client, i) =>
        {
            await client.SendAsync($"still {i}\n");
            Assert.Equal($"still {i}", await client.ReadLineAsync());
        }));
        Assert.Equal(1_000, server.ConnectionCount);

        foreach (var client in admitted)
        {
            await client.DisposeAsync();
        }
    }
}
