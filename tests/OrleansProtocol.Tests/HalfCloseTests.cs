using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>EofReceived's keep-open flag and WriteEof: TCP half-close both ways.</summary>
[Collection(GatewayCollection.Name)]
public sealed class HalfCloseTests(GatewayClusterFixture fixture)
{
    private static byte[] RandomBytes(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private async Task<byte[]> EchoThenHalfCloseAsync(string listener, byte[] payload)
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint(listener));

        // Read concurrently: the echo comes back while we send, as it would from a real peer.
        var reading = Task.Run(client.ReadToEndAsync);
        await client.SendAsync(payload);
        client.ShutdownSend();
        return await reading;
    }

    [Fact]
    public async Task EofReceived_false_closes_after_flushing_every_echoed_byte()
    {
        var payload = RandomBytes(4 * 1024 * 1024, 1);
        var echoed = await EchoThenHalfCloseAsync("echo", payload);
        Assert.True(payload.AsSpan().SequenceEqual(echoed), $"got {echoed.Length} of {payload.Length} bytes back");
    }

    [Fact]
    public async Task EofReceived_true_keeps_the_connection_half_open_and_4_MiB_come_back_byte_exact()
    {
        var payload = RandomBytes(4 * 1024 * 1024, 2);
        var echoed = await EchoThenHalfCloseAsync("half-open-echo", payload);
        Assert.True(payload.AsSpan().SequenceEqual(echoed), $"got {echoed.Length} of {payload.Length} bytes back");
    }

    [Fact]
    public async Task EofReceived_true_lets_the_grain_write_after_the_peers_EOF_until_it_closes()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;
        await client.SendAsync("keep-open\n");
        Assert.Equal("ok", await client.ReadLineAsync());
        client.ShutdownSend();
        Assert.Equal("eof-received", await client.ReadLineAsync());

        // Half-open: the grain still writes, from outside any callback, and decides when to close.
        var grain = fixture.ScriptGrain(record);
        await grain.WriteNow("still here\n");
        Assert.Equal("still here", await client.ReadLineAsync());
        await grain.CloseNow();
        Assert.Empty(await client.ReadToEndAsync());
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        ConnectionLifecycleTests.AssertCallOrder(record);
        Assert.Equal(ConnectionCloseReason.LocalClose, record.LostReason);
    }

    [Fact]
    public async Task WriteEof_half_closes_the_peer_reads_EOF_and_can_still_send_and_Write_after_it_throws()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await using var disposeClient = client;
        await client.SendAsync("write-eof\n");

        // Everything written before WriteEof, then EOF.
        Assert.Equal("eof-sent\n", Encoding.UTF8.GetString(await client.ReadToEndAsync()));
        Assert.Contains("write-after-eof-threw", record.Events);
        Assert.DoesNotContain("write-after-eof-accepted", record.Events);

        // Our side can still send, and the grain still receives.
        // The grain counts the bytes before it handles the line: wait for the line itself.
        await client.SendAsync("note after-eof\n");
        await fixture.Recorder.WaitUntilAsync(() => record.Events.Contains("note after-eof"));
        client.ShutdownSend();
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        ConnectionLifecycleTests.AssertCallOrder(record);
        Assert.Null(record.LostException);
    }
}
