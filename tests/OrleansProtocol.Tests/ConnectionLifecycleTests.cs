using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>asyncio's state machine CM → DR* → ER? → CL, with ConnectionLost exactly once on every path.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ConnectionLifecycleTests(GatewayClusterFixture fixture)
{
    private static readonly Regex StateMachine = new("^CM( DR)*( ER)? CL$");

    internal static void AssertCallOrder(ConnectionRecord record)
    {
        var calls = string.Join(' ', record.Events.Where(e => e is "CM" or "DR" or "ER" or "CL"));
        Assert.Matches(StateMachine, calls);
    }

    private Task WaitForLostAsync(ConnectionRecord record) =>
        fixture.Recorder.WaitUntilAsync(() => record.Count("CL") > 0);

    [Fact]
    public async Task Peer_FIN_delivers_EofReceived_then_ConnectionLost_once_with_no_exception()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await client.SendAsync("echo hi\n");
        Assert.Equal("hi", await client.ReadLineAsync());
        client.ShutdownSend();
        Assert.Empty(await client.ReadToEndAsync());
        await WaitForLostAsync(record);

        AssertCallOrder(record);
        Assert.Equal(1, record.Count("ER"));
        Assert.Equal(1, record.Count("CL"));
        Assert.Null(record.LostException);
        Assert.Equal(ConnectionCloseReason.PeerClosed, record.LostReason);
    }

    [Fact]
    public async Task Peer_RST_delivers_ConnectionLost_once_with_a_reset_and_never_EofReceived()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await client.SendAsync("echo hi\n");
        Assert.Equal("hi", await client.ReadLineAsync());
        client.Reset();
        await WaitForLostAsync(record);

        AssertCallOrder(record);
        Assert.Equal(0, record.Count("ER"));
        Assert.Equal(1, record.Count("CL"));
        var exception = Assert.IsType<ConnectionClosedException>(record.LostException);
        Assert.Equal(ConnectionCloseReason.PeerReset, exception.Reason);
    }

    [Fact]
    public async Task Close_flushes_then_closes_and_delivers_ConnectionLost_once()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await client.SendAsync("close\n");
        Assert.Equal("bye\n", Encoding.UTF8.GetString(await client.ReadToEndAsync()));
        await WaitForLostAsync(record);

        AssertCallOrder(record);
        Assert.Equal(1, record.Count("CL"));
        Assert.Null(record.LostException);
        Assert.Equal(ConnectionCloseReason.LocalClose, record.LostReason);
    }

    [Fact]
    public async Task Write_then_Close_delivers_the_data_then_EOF_200_times_out_of_200()
    {
        var endPoint = fixture.EndPoint("bye");
        var losses = 0;
        for (var i = 0; i < 200; i++)
        {
            await using var client = await TestClient.ConnectAsync(endPoint);
            var received = Encoding.ASCII.GetString(await client.ReadToEndAsync());
            if (received != "bye")
            {
                losses++;
            }
        }

        Assert.Equal(0, losses);
    }

    [Fact]
    public async Task Abort_discards_buffered_data_resets_and_delivers_ConnectionLost_once()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        // Under the listener's 1 MiB write-buffer cap. The client reads nothing until the abort has happened, so the
        // bytes are still in the gateway or the kernel then, and the reset discards them.
        const int size = 768 * 1024;
        await client.SendAsync($"abort-after {size}\n");
        await WaitForLostAsync(record);

        long received = 0;
        try
        {
            received = (await client.ReadToEndAsync()).Length;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        Assert.True(received < size, $"received {received} of {size} bytes: the buffer was not discarded");
        AssertCallOrder(record);
        Assert.Equal(1, record.Count("CL"));
        Assert.Null(record.LostException);
        Assert.Equal(ConnectionCloseReason.LocalAbort, record.LostReason);
    }

    [Fact]
    public async Task A_callback_that_throws_aborts_its_connection_and_ConnectionLost_gets_that_exception_once()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await client.SendAsync("throw\n");
        await WaitForLostAsync(record);
        try
        {
            await client.ReadToEndAsync();
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        AssertCallOrder(record);
        Assert.Equal(1, record.Count("CL"));
        var exception = Assert.IsType<InvalidOperationException>(record.LostException);
        Assert.StartsWith("boom", exception.Message);
        Assert.Equal(ConnectionCloseReason.ApplicationError, record.LostReason);
    }

    [Fact]
    public async Task Writes_after_Close_are_dropped_without_an_exception_crossing_the_grain_boundary()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        await client.SendAsync("close-then-write\n");
        Assert.Empty(await client.ReadToEndAsync());
        await WaitForLostAsync(record);

        Assert.Contains("wrote-after-close", record.Events);
        Assert.Null(record.LostException);
        Assert.Equal(ConnectionCloseReason.LocalClose, record.LostReason);
    }

    [Fact]
    public async Task GetExtraInfo_peername_is_the_client_sockets_local_endpoint_and_sockname_the_listener()
    {
        var (client, _) = await fixture.ConnectScriptAsync();
        await client.SendAsync("extra\n");
        var line = await client.ReadLineAsync();
        Assert.Equal($"{client.LocalEndPoint} {fixture.EndPoint("script")} default", line);
        await client.DisposeAsync();
    }

    [Fact]
    public async Task Writes_from_outside_a_callback_reach_the_socket_in_the_order_the_grain_made_them()
    {
        const int rounds = 200;
        var (client, record) = await fixture.ConnectScriptAsync();
        var grain = fixture.ScriptGrain(record);
        var reading = Task.Run(async () =>
        {
            var lines = new List<string>();
            while (lines.Count < 2 * rounds)
            {
                lines.Add(await client.ReadLineAsync());
            }

            return lines;
        });

        for (var i = 0; i < rounds; i++)
        {
            // Unsolicited writes (observer pushes) interleaved with solicited ones (callback replies).
            await grain.WriteNow($"push {i}\n");
            await client.SendAsync($"echo reply {i}\n");
        }

        var lines = await reading;
        var pushes = lines.Where(l => l.StartsWith("push")).ToList();
        var replies = lines.Where(l => l.StartsWith("reply")).ToList();
        Assert.Equal(Enumerable.Range(0, rounds).Select(i => $"push {i}"), pushes);
        Assert.Equal(Enumerable.Range(0, rounds).Select(i => $"reply {i}"), replies);

        // The grain wrote push i before it could see the request for reply i.
        for (var i = 0; i < rounds; i++)
        {
            Assert.True(lines.IndexOf($"push {i}") < lines.IndexOf($"reply {i}"), $"reply {i} overtook push {i}");
        }

        await client.DisposeAsync();
    }
}
