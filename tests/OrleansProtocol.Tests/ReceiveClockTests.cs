using OrleansProtocol.Testing;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>
/// A protocol's own receive clocks (<c>Transport.SetReceiveTimeout</c>, <c>SetReceiveDeadline</c>), run by the
/// gateway on the test kit's fake clock: a client inside each is served, one past it is closed with the reason.
/// </summary>
public sealed class ReceiveClockTests(ReceiveClockTests.Host fixture) : IClassFixture<ReceiveClockTests.Host>
{
    private ProtocolTestHost Server => fixture.Server!;

    [Fact]
    public async Task A_client_that_connects_within_the_deadline_and_pings_inside_its_keepalive_is_served_for_as_long_as_it_pings()
    {
        // The PONG comes after ConnectionMade's reply, which set the deadline, was applied: it counts from here.
        await using var client = Server.Connect();
        await client.WriteAsync("PING\n");
        Assert.Equal("PONG", await client.ReadLineAsync());
        Server.Advance(TimeSpan.FromSeconds(9.9));
        await client.WriteAsync("CONNECT 2\n");
        Assert.Equal("CONNACK", await client.ReadLineAsync());

        // The deadline is cleared: long past it, a client pinging every 2.9 s (inside 1.5 × 2 s) stays.
        for (var i = 0; i < 10; i++)
        {
            Server.Advance(TimeSpan.FromSeconds(2.9));
            await client.WriteAsync("PING\n");
            Assert.Equal("PONG", await client.ReadLineAsync());
        }

        // Turned off, nothing closes it.
        await client.WriteAsync("OFF\n");
        Assert.Equal("ok", await client.ReadLineAsync());
        Server.Advance(TimeSpan.FromHours(1));
        await client.WriteAsync("PING\n");
        Assert.Equal("PONG", await client.ReadLineAsync());
    }

    [Fact]
    public async Task Half_a_CONNECT_sent_steadily_still_misses_the_deadline_and_the_protocol_hears_ReceiveDeadline()
    {
        await using var client = Server.Connect();
        for (var i = 0; i < 5; i++)
        {
            // A byte every two seconds: no idle clock would catch it, the message's deadline does. Once the first is
            // handled, ConnectionMade's reply (the deadline) has been applied: the pump applies a reply before the next call.
            await client.WriteAsync("C");
            await Server.Callbacks.WaitUntilAsync(client, c => c.Name == "DataReceived" && client.Callbacks.Count(d => d.Name == "DataReceived") > i);
            Server.Advance(TimeSpan.FromSeconds(2.01));
        }

        Assert.Equal(ConnectionCloseReason.ReceiveDeadline, await client.ClosedAsync());
        await Server.Callbacks.WaitUntilAsync(client, "ConnectionLost");
        Assert.Equal(["CloseRequested ReceiveDeadline", "ConnectionLost ReceiveDeadline"], client.Callbacks.Select(c => c.ToString()).TakeLast(2));
    }

    [Fact]
    public async Task A_silent_client_is_closed_after_its_keepalive_even_while_the_server_writes_to_it()
    {
        await using var client = Server.Connect();
        await client.WriteAsync("CONNECT 2\n");
        Assert.Equal("CONNACK", await client.ReadLineAsync());
        await client.WriteAsync("TALK\n");
        await Server.Callbacks.WaitUntilAsync(client, c => c.Name == "DataReceived" && c.Data.Span.SequenceEqual("TALK\n"u8));
        for (var i = 0; i < 3; i++)
        {
            // Bytes to the client each second: the listener's idle clock would count them, the receive timeout does not.
            Server.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal("news", await client.ReadLineAsync());
        }

        Server.Advance(TimeSpan.FromSeconds(0.5));
        Assert.Equal(ConnectionCloseReason.ReceiveTimeout, await client.ClosedAsync());
        await Server.Callbacks.WaitUntilAsync(client, "ConnectionLost");
        Assert.Equal("ConnectionLost ReceiveTimeout", client.Callbacks[^1].ToString());
    }

    [Fact]
    public async Task A_negative_receive_timeout_is_refused_in_the_grain_and_the_connection_goes_on()
    {
        await using var client = Server.Connect();
        await client.WriteAsync("BAD\nPING\n");
        Assert.Equal("refused timeout", await client.ReadLineAsync());
        Assert.Equal("PONG", await client.ReadLineAsync());
    }

    /// <summary>One kit host for the class: the keepalive protocol on a listener with no clock of its own.</summary>
    public sealed class Host : IAsyncLifetime
    {
        public ProtocolTestHost? Server { get; private set; }

        public async Task InitializeAsync() => Server = await ProtocolTestHost.StartAsync<KeepaliveGrain>();

        public async Task DisposeAsync()
        {
            if (Server is not null)
            {
                await Server.DisposeAsync();
            }
        }
    }
}
