using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>Read back-pressure (PauseReading/ResumeReading) and write back-pressure (PauseWriting/ResumeWriting).</summary>
[Collection(GatewayCollection.Name)]
public sealed class FlowControlTests(GatewayClusterFixture fixture)
{
    [Fact]
    public async Task PauseReading_takes_effect_at_once_is_idempotent_and_one_ResumeReading_restarts_delivery()
    {
        using var paused = fixture.Collect<long>("orleansprotocol.paused_connections");
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;

        // "pause2" pauses twice in one callback; the bytes after it in the same write must not be delivered
        // until the single resume.
        await client.SendAsync("echo before\n");
        Assert.Equal("before", await client.ReadLineAsync());
        await client.SendAsync("pause2\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Events.Contains("paused"));
        var deliveriesWhilePaused = record.Count("DR");
        await client.SendAsync("echo while-paused\n");

        // Nothing may arrive while paused: watch for a bounded period (absence cannot be awaited as an event).
        var early = fixture.Recorder.WaitUntilAsync(() => record.Count("DR") > deliveriesWhilePaused, TestTimeouts.QuietPeriod);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => early);

        // The paused-connections gauge counted this connection once, as paused reading.
        await paused.WaitForMeasurementsAsync(1).WaitAsync(TestTimeouts.Default);
        var pause = Assert.Single(paused.GetMeasurementSnapshot());
        Assert.Equal((1L, "script", "read"), (pause.Value, pause.Tags["orleansprotocol.listener"], pause.Tags["orleansprotocol.direction"]));

        var grain = fixture.ScriptGrain(record);
        await grain.ResumeReadingNow();
        Assert.Equal("while-paused", await client.ReadLineAsync());
        await paused.WaitForMeasurementsAsync(2).WaitAsync(TestTimeouts.Default);
        Assert.Equal(0, paused.GetMeasurementSnapshot().Sum(m => m.Value));

        // The data was delivered after the resume, never before it.
        var events = record.Events.ToList();
        Assert.True(events.LastIndexOf("DR") > events.IndexOf("resume"));
        Assert.Equal(deliveriesWhilePaused, events.Take(events.IndexOf("resume")).Count(e => e == "DR"));
    }

    [Fact]
    public async Task A_peer_that_does_not_read_gets_PauseWriting_then_ResumeWriting_when_it_drains_and_memory_stays_bounded()
    {
        const long total = 24L * 1024 * 1024;
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;

        // The grain produces 256 KiB per tick while not paused; the client reads nothing yet. Early chunks may pause
        // and resume writing while the kernel's socket buffers absorb them; once those are full the pause sticks.
        await client.SendAsync($"flood {total}\n");
        var connection = await fixture.Recorder.WaitAsync(() => fixture.TryGetGatewayConnection(record.Connection.ConnectionId));
        await fixture.Recorder.WaitUntilAsync(() =>
            record.Events.LastOrDefault(e => e is "PW" or "RW") == "PW" &&
            connection.WriteBufferSize > ProtocolTransport.DefaultWriteBufferHigh);


        // The producer honours the pause, so the gateway's buffer stays near the high-water mark plus the chunks in
        // flight when the pause was noticed: far below the 24 MiB the grain wanted to send, and far below what the
        // kernel's socket buffers hold, so without the pause most of the 24 MiB would pile up here.
        Assert.True(connection.PeakWriteBufferSize < 4 * 1024 * 1024, $"gateway buffered {connection.PeakWriteBufferSize} bytes");

        // Drain: everything arrives, and ResumeWriting came each time the buffer fell to the low-water mark.
        var received = 0L;
        var buffer = new byte[256 * 1024];
        while (received < total)
        {
            received += await client.ReceiveAsync(buffer);
        }

        await fixture.Recorder.WaitUntilAsync(() => record.Events.LastOrDefault(e => e is "PW" or "RW") == "RW");
        var flow = record.Events.Where(e => e is "PW" or "RW").ToList();
        for (var i = 0; i < flow.Count; i++)
        {
            Assert.Equal(i % 2 == 0 ? "PW" : "RW", flow[i]);
        }

        Assert.Equal(total, received);

        // As in asyncio, the protocol sees its buffer strictly over high in PauseWriting. In ResumeWriting it sees at
        // most low once it has stopped producing: early on, a chunk written before PauseWriting reached the grain
        // may still count, so the check is on the resume that follows the long pause.
        foreach (var size in record.Events.Where(e => e.StartsWith("PW-size ")).Select(e => long.Parse(e[8..])))
        {
            Assert.True(size > ProtocolTransport.DefaultWriteBufferHigh, $"PauseWriting with {size} bytes buffered");
        }

        var lastResume = long.Parse(record.Events.Last(e => e.StartsWith("RW-size "))[8..]);
        Assert.True(lastResume <= ProtocolTransport.DefaultWriteBufferLow, $"ResumeWriting with {lastResume} bytes buffered");
        Assert.True(connection.PeakWriteBufferSize < 4 * 1024 * 1024, $"gateway buffered {connection.PeakWriteBufferSize} bytes");
        // The flood timer keeps ticking (and waking the recorder) until the connection ends.
        await fixture.Recorder.WaitUntilAsync(() => connection.WriteBufferSize == 0);
    }
}
