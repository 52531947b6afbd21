using System.Net;
using Microsoft.Extensions.DependencyInjection;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Testing;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>The test kit as a protocol author uses it (<c>OrleansProtocol.Testing</c>): the README's example first.</summary>
public sealed class TestKitTests
{
    // The README's example, verbatim.
    [Fact]
    public async Task The_string_receiver_answers_ok_to_a_string_and_closes_after_the_clients_EOF()
    {
        await using var host = await ProtocolTestHost.StartAsync<StringReceiverGrain>();
        await using var client = host.Connect();
        await client.WriteAsync([11, 0, 0, 0, .. "hello world"u8]);
        Assert.Equal([2, 0, 0, 0, .. "ok"u8], await client.ReadExactlyAsync(6));
        await client.WriteEofAsync();
        Assert.Equal(ConnectionCloseReason.PeerClosed, await client.ClosedAsync());
        Assert.Equal(["ConnectionMade", "DataReceived", "EofReceived", "ConnectionLost PeerClosed"], client.Callbacks.Select(c => c.ToString()));
    }

    [Fact]
    public async Task In_memory_and_socket_clients_of_one_host_read_lines_to_the_end_and_reset()
    {
        await using var host = await ProtocolTestHost.StartAsync<EchoGrain>();

        await using var memory = host.Connect();
        await memory.WriteAsync("over pipes\n");
        Assert.Equal("over pipes", await memory.ReadLineAsync());
        Assert.Equal((await memory.ConnectionAsync()).RemoteEndPoint, memory.LocalEndPoint);

        await using var socket = await host.ConnectSocketAsync();
        await socket.WriteAsync("over a socket\r\n");
        Assert.Equal("over a socket", await socket.ReadLineAsync());
        await socket.WriteEofAsync();
        Assert.Empty(await socket.ReadToEndAsync());
        Assert.Equal(ConnectionCloseReason.PeerClosed, await socket.ClosedAsync());

        memory.Reset();
        Assert.Equal(ConnectionCloseReason.PeerReset, await memory.ClosedAsync());
        Assert.Equal("ConnectionLost PeerReset", memory.Callbacks[^1].ToString());
        Assert.Equal("over pipes\n"u8.ToArray(), memory.Callbacks.Where(c => c.Name == "DataReceived").SelectMany(c => c.Data.ToArray()));

        // A client at an address of the test's choosing; a second one there while it is open would be confused with it.
        var from = new IPEndPoint(IPAddress.Parse("203.0.113.9"), 4000);
        await using (var chosen = host.Connect(from))
        {
            Assert.Equal(from, (await chosen.ConnectionAsync()).RemoteEndPoint);
            Assert.Throws<ArgumentException>(() => host.Connect(from));
        }

        await using var again = host.Connect(from);
        await again.WriteAsync("again\n");
        Assert.Equal("again", await again.ReadLineAsync());
    }

    [Fact]
    public async Task The_fake_clock_runs_the_gateways_idle_timeout_and_the_grains_CallLater()
    {
        await using var host = await ProtocolTestHost.StartAsync<LoopGrain>(
            o => o.IdleTimeout = TimeSpan.FromHours(1),
            silo => silo.Services.AddSingleton(new CallbackRecorder()));
        await using var client = host.Connect();

        // A timer an hour ahead fires when the test moves the clock an hour, not before.
        await client.WriteAsync("later hourly 3600000\n");
        await host.Callbacks.WaitUntilAsync(client, c => c.Name == "DataReceived");
        host.Advance(TimeSpan.FromMinutes(59));
        host.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal("fired hourly", await client.ReadLineAsync());

        // The reply was a byte on the wire: the idle timeout counts from it.
        host.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        Assert.Equal(ConnectionCloseReason.IdleTimeout, await client.ClosedAsync());
    }

    [Fact]
    public async Task After_the_protocol_aborts_the_client_sees_a_reset_reading_and_writing_and_the_reason_is_LocalAbort()
    {
        await using var host = await ProtocolTestHost.StartAsync<ScriptGrain>(configureSilo: silo => silo.Services.AddSingleton(new CallbackRecorder()));
        await using var client = host.Connect();
        await client.WriteAsync("abort-after 3\n");
        await Assert.ThrowsAsync<Microsoft.AspNetCore.Connections.ConnectionResetException>(client.ReadToEndAsync);
        Assert.Equal(ConnectionCloseReason.LocalAbort, await client.ClosedAsync());
        await Assert.ThrowsAsync<Microsoft.AspNetCore.Connections.ConnectionResetException>(() => client.WriteAsync("too late\n"));
    }

    [Fact]
    public async Task The_log_names_each_frame_as_the_callback_one_overrides_and_a_wait_that_times_out_says_what_was_recorded()
    {
        await using var host = await ProtocolTestHost.StartAsync<FramedStringReceiverGrain>(
            o => o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, PrefixLength = 4, BigEndian = false });
        await using var client = host.Connect();

        // Two frames in one write reach the grain in one call, and the log has one FrameReceived for each.
        await client.WriteAsync([1, 0, 0, 0, (byte)'a', 2, 0, 0, 0, (byte)'b', (byte)'c']);
        Assert.Equal([2, 0, 0, 0, .. "ok"u8, 2, 0, 0, 0, .. "ok"u8], await client.ReadExactlyAsync(12));
        var second = await host.Callbacks.WaitUntilAsync(client, c => c.Name == "FrameReceived" && c.Data.Length == 2);
        Assert.Equal("bc"u8.ToArray(), second.Data.ToArray());
        Assert.Equal(["ConnectionMade", "FrameReceived", "FrameReceived"], client.Callbacks.Select(c => c.ToString()));
        Assert.All(ProtocolCallback.Names, name => Assert.DoesNotContain("FramesReceived", name, StringComparison.Ordinal));

        // A name the log never records is refused at once; a wait that ends empty lists what it saw.
        var wrong = await Assert.ThrowsAsync<ArgumentException>(() => host.Callbacks.WaitUntilAsync(client, "FramesReceived"));
        Assert.Contains("FrameReceived", wrong.Message, StringComparison.Ordinal);
        client.Timeout = TimeSpan.FromMilliseconds(300);
        var timedOut = await Assert.ThrowsAsync<TimeoutException>(() => host.Callbacks.WaitUntilAsync(client, "EofReceived"));
        Assert.Contains("Recorded: ConnectionMade, FrameReceived, FrameReceived.", timedOut.Message, StringComparison.Ordinal);
    }
}
