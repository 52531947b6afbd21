using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>Framing done by the gateway: whole frames to FrameReceived, WriteFrame back, the size limit enforced.</summary>
[Collection(GatewayCollection.Name)]
public sealed class FramedListenerTests(GatewayClusterFixture fixture)
{
    private static byte[] Be2(params string[] frames) =>
        frames.SelectMany(f =>
        {
            var body = Encoding.UTF8.GetBytes(f);
            return new[] { (byte)(body.Length >> 8), (byte)body.Length }.Concat(body);
        }).ToArray();

    [Fact]
    public async Task The_seed_example_on_the_framed_listener_gets_whole_strings_and_answers_with_frames()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("framed-strings"));
        var frame = StringReceiverTests.Frame("hello world");
        await client.SendAsync(frame.AsMemory(0, 3));
        await client.SendAsync(frame.AsMemory(3, 5));
        await client.SendAsync(frame.AsMemory(8));
        await client.SendAsync(StringReceiverTests.Frame("a").Concat(StringReceiverTests.Frame("b")).ToArray());
        var ok = StringReceiverTests.Frame("ok");
        Assert.Equal(ok.Concat(ok).Concat(ok).ToArray(), await client.ReadExactlyAsync(3 * ok.Length));
    }

    [Fact]
    public async Task Frames_sent_byte_by_byte_and_many_in_one_write_come_back_whole_and_in_order()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("frames-be2"));
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        var first = Be2("split", "", "x");
        foreach (var b in first)
        {
            await client.SendAsync(new[] { b });
        }

        Assert.Equal(first, await client.ReadExactlyAsync(first.Length));

        var many = Be2(Enumerable.Range(0, 500).Select(i => $"frame {i}").ToArray());
        await client.SendAsync(many);
        Assert.Equal(many, await client.ReadExactlyAsync(many.Length));

        Assert.Equal(503, record.Count("FR"));
    }

    [Fact]
    public async Task A_frame_at_the_limit_passes_and_one_byte_over_closes_with_FrameTooLarge_before_the_body()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("frames-be2"));
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        var atLimit = Be2(new string('a', 1000));
        await client.SendAsync(atLimit);
        Assert.Equal(atLimit, await client.ReadExactlyAsync(atLimit.Length));

        // Just the prefix of a 1001-byte frame: the connection closes without waiting for the body.
        await client.SendAsync(new byte[] { 0x03, 0xE9 });
        Assert.Empty(await client.ReadToEndAsync());
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.FrameTooLarge, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
    }

    [Fact]
    public async Task A_2_GiB_length_prefix_closes_the_connection_at_once()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("framed-strings"));
        await client.SendAsync(new byte[] { 0, 0, 0, 0x80 });
        Assert.Empty(await client.ReadToEndAsync());
    }

    [Fact]
    public async Task Line_framing_takes_LF_and_CRLF_and_closes_a_line_that_never_ends()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("frames-line"));
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        await client.SendAsync("one\r\ntwo\n");
        Assert.Equal("one", await client.ReadLineAsync());
        Assert.Equal("two", await client.ReadLineAsync());

        await client.SendAsync(new string('z', 101));
        Assert.Empty(await client.ReadToEndAsync());
        await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.FrameTooLarge, record.LostReason);
    }
}
