using System.Text;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>SetProtocol: a connection handed from one protocol grain to another mid-stream.</summary>
[Collection(GatewayCollection.Name)]
public sealed class SetProtocolTests(GatewayClusterFixture fixture)
{
    [Fact]
    public async Task Upgrading_from_lines_to_length_prefixed_strings_loses_and_reorders_nothing()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("upgrade"));

        // The command and the first frames in one write: the old protocol must hand the rest over, in order.
        var write = Encoding.ASCII.GetBytes("hello\nSTRINGS\n")
            .Concat(StringReceiverTests.Frame("one"))
            .Concat(StringReceiverTests.Frame("two"))
            .Concat(StringReceiverTests.Frame("thr")[..5])
            .ToArray();
        await client.SendAsync(write);
        Assert.Equal("echo: hello", await client.ReadLineAsync());
        Assert.Equal("upgrading to length-prefixed strings", await client.ReadLineAsync());

        // The rest of the split third frame arrives later, and reaches the new protocol after the first two.
        await client.SendAsync(StringReceiverTests.Frame("thr")[5..]);
        var ok = StringReceiverTests.Frame("ok");
        Assert.Equal(ok.Concat(ok).Concat(ok).ToArray(), await client.ReadExactlyAsync(3 * ok.Length));

        // The old grain got no further callbacks and deactivated; the new one serves the same connection id.
        var connection = fixture.Gateway.GetServer("upgrade").Connections.Single(c => Equals(c.Info.RemoteEndPoint, client.LocalEndPoint));
        var oldGrain = fixture.Grains.GetGrain<IProtocolGrain>(connection.Id, typeof(LineUpgradeGrain).FullName).GetGrainId();
        await fixture.Cluster.WaitForDeactivationAsync(oldGrain).WaitAsync(TestTimeouts.Default);
        Assert.False(fixture.Cluster.TryGetGrainContext(oldGrain, out _));
        var newGrain = fixture.Grains.GetGrain<IProtocolGrain>(connection.Id, typeof(StringReceiverGrain).FullName).GetGrainId();
        Assert.True(fixture.Cluster.TryGetGrainContext(newGrain, out _));

        client.ShutdownSend();
        Assert.Empty(await client.ReadToEndAsync());
        await fixture.Cluster.WaitForDeactivationAsync(newGrain).WaitAsync(TestTimeouts.Default);
    }

    [Fact]
    public async Task The_new_protocol_counts_the_shared_write_buffer_including_what_the_old_one_left_not_what_it_sent()
    {
        await using var client = await TestClient.ConnectAsync(fixture.EndPoint("write-then-upgrade"));
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        // The client has read nothing: the old protocol's bytes still buffered are the new protocol's write buffer.
        var inherited = await fixture.ScriptGrain(record).WriteBufferSize();
        Assert.InRange(inherited, 1, WriteThenUpgradeGrain.Written);
        Assert.Equal(WriteThenUpgradeGrain.Written, (await client.ReadExactlyAsync(WriteThenUpgradeGrain.Written)).Length);

        // The grain's count is exact as of its last callback: the gateway had sent everything before "echo again"
        // arrived, and the callback then wrote "again\n". (Counted from the connection's start, it would be negative
        // by the old protocol's 32 MiB.)
        await client.SendAsync("echo hi\n");
        Assert.Equal("hi", await client.ReadLineAsync());
        await client.SendAsync("echo again\n");
        Assert.Equal("again", await client.ReadLineAsync());
        Assert.Equal("again\n".Length, await fixture.ScriptGrain(record).WriteBufferSize());
    }
}
