using System.Buffers.Binary;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The seed's README example: 4-byte little-endian length-prefixed strings, each answered with "ok".</summary>
[Collection(GatewayCollection.Name)]
public sealed class StringReceiverTests(GatewayClusterFixture fixture)
{
    private static readonly byte[] Ok = Frame("ok");

    internal static byte[] Frame(string text)
    {
        var body = Encoding.UTF8.GetBytes(text);
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        return frame;
    }

    [Fact]
    public async Task The_seed_example_hello_world_is_answered_with_a_length_prefixed_ok()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("strings"));
        await client.SendAsync(Frame("hello world"));
        Assert.Equal(Ok, await client.ReadExactlyAsync(Ok.Length));
    }

    [Fact]
    public async Task A_frame_split_across_three_writes_is_one_string()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("strings"));
        var frame = Frame("split into three parts");
        await client.SendAsync(frame.AsMemory(0, 2));
        await client.SendAsync(frame.AsMemory(2, 7));
        await client.SendAsync(frame.AsMemory(9));
        Assert.Equal(Ok, await client.ReadExactlyAsync(Ok.Length));
        client.ShutdownSend();
        Assert.Empty(await client.ReadToEndAsync());
    }

    [Fact]
    public async Task Two_frames_in_one_write_are_two_strings()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("strings"));
        await client.SendAsync(Frame("first").Concat(Frame("second")).ToArray());
        Assert.Equal(Ok.Concat(Ok).ToArray(), await client.ReadExactlyAsync(2 * Ok.Length));
    }

    [Fact]
    public async Task A_length_over_the_maximum_closes_the_connection_before_the_body_arrives()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("strings"));
        var prefix = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(prefix, 100_000);

        // Only the prefix: the connection closes without waiting for (or buffering) 100,000 bytes.
        await client.SendAsync(prefix);
        Assert.Empty(await client.ReadToEndAsync());
    }
}
