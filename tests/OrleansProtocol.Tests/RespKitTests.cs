using System.Text;
using Microsoft.Extensions.DependencyInjection;
using OrleansProtocol.Gateway.Hosting;
using OrleansProtocol.Samples.Resp;
using OrleansProtocol.Testing;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The RESP sample through the test kit, without external tools: commands, pipelining, errors, expiry, pub/sub.</summary>
public sealed class RespKitTests
{
    private static Task<ProtocolTestHost> StartAsync(int keySlots = 64) =>
        ProtocolTestHost.StartAsync<RespGrain>(RespListener.Configure, silo => silo.Services.Configure<RespOptions>(o => o.KeySlots = keySlots));

    private static string Command(params string[] arguments) =>
        $"*{arguments.Length}\r\n" + string.Concat(arguments.Select(a => $"${Encoding.UTF8.GetByteCount(a)}\r\n{a}\r\n"));

    private static async Task ExpectAsync(ProtocolTestClient client, string replies) =>
        Assert.Equal(replies, Encoding.UTF8.GetString(await client.ReadExactlyAsync(Encoding.UTF8.GetByteCount(replies))));

    [Fact]
    public async Task A_pipelined_burst_is_answered_in_order_with_Redis_replies_and_errors()
    {
        await using var host = await StartAsync();
        await using var client = host.Connect();

        // One write: keys on several slots, local commands and errors interleaved; the replies keep the order.
        await client.WriteAsync(
            Command("SET", "k", "v") + Command("GET", "k") + "PING\r\n" + Command("INCR", "n") + Command("INCRBY", "n", "41")
            + Command("DECR", "n") + Command("INCR", "k") + Command("MSET", "a", "1", "b", "2") + Command("MGET", "a", "nope", "b")
            + Command("EXISTS", "a", "b", "nope") + Command("DEL", "a", "nope") + Command("GET") + Command("FOO", "x")
            + Command("SELECT", "0") + Command("SELECT", "1") + Command("ECHO", "hi") + Command("SET", "k", "w", "NX")
            + Command("SET", "fresh", "x", "XX") + Command("SET", "k", "w", "XX") + Command("GET", "k"));
        await ExpectAsync(client,
            "+OK\r\n$1\r\nv\r\n+PONG\r\n:1\r\n:42\r\n:41\r\n-ERR value is not an integer or out of range\r\n+OK\r\n"
            + "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n:2\r\n:1\r\n-ERR wrong number of arguments for 'get' command\r\n"
            + "-ERR unknown command 'FOO', with args beginning with: 'x' \r\n+OK\r\n-ERR DB index is out of range\r\n$2\r\nhi\r\n"
            + "$-1\r\n$-1\r\n+OK\r\n$1\r\nw\r\n");

        // Keys outlive the connection that wrote them.
        await client.WriteAsync(Command("QUIT"));
        await ExpectAsync(client, "+OK\r\n");
        Assert.Empty(await client.ReadToEndAsync());
        await using var other = host.Connect();
        await other.WriteAsync(Command("GET", "k") + Command("GET", "n"));
        await ExpectAsync(other, "$1\r\nw\r\n$2\r\n41\r\n");

        // CLIENT LIST shows every connection of the listener with the name it gave itself.
        await using var named = host.Connect();
        await named.WriteAsync(Command("CLIENT", "SETNAME", "worker-7"));
        await ExpectAsync(named, "+OK\r\n");
        await other.WriteAsync(Command("CLIENT", "LIST"));
        var header = await other.ReadLineAsync();
        var list = Encoding.UTF8.GetString(await other.ReadExactlyAsync(int.Parse(header![1..], System.Globalization.CultureInfo.InvariantCulture) + 2));
        Assert.Equal(2, list.TrimEnd().Split('\n').Length);
        Assert.Contains($"addr={named.LocalEndPoint} ", list);
        Assert.Contains(" name=worker-7 db=0", list);
    }

    [Fact]
    public async Task An_oversized_bulk_length_and_garbage_get_Redis_protocol_errors_then_a_clean_close()
    {
        await using var host = await StartAsync();
        await using (var oversized = host.Connect())
        {
            await oversized.WriteAsync("*1\r\n$2147483647\r\n");
            Assert.Equal("-ERR Protocol error: invalid bulk length\r\n", Encoding.UTF8.GetString(await oversized.ReadToEndAsync()));
            Assert.Equal(ConnectionCloseReason.FrameTooLarge, await oversized.ClosedAsync());
        }

        await using var garbage = host.Connect();
        await garbage.WriteAsync(Command("PING") + "*1\r\n:x\r\n");
        Assert.Equal("+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n", Encoding.UTF8.GetString(await garbage.ReadToEndAsync()));
        Assert.Equal(ConnectionCloseReason.ProtocolError, await garbage.ClosedAsync());
    }

    [Fact]
    public async Task A_16_MiB_value_goes_in_and_comes_back_byte_exact()
    {
        await using var host = await StartAsync();
        await using var client = host.Connect();
        var value = new byte[16 * 1024 * 1024];
        new Random(3).NextBytes(value);
        var set = Encoding.ASCII.GetBytes($"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${value.Length}\r\n").Concat(value).Concat("\r\n"u8.ToArray()).ToArray();
        await client.WriteAsync(set);
        await ExpectAsync(client, "+OK\r\n");
        await client.WriteAsync(Command("GET", "big"));
        await ExpectAsync(client, $"${value.Length}\r\n");
        var back = await client.ReadExactlyAsync(value.Length);
        Assert.True(value.AsSpan().SequenceEqual(back));
        await ExpectAsync(client, "\r\n");
    }

    [Fact]
    public async Task Keys_expire_by_the_grains_timer_on_the_fake_clock_without_being_read()
    {
        // A grain per key: once its key expires, the timer removes it and the grain deactivates, with no command on it.
        await using var host = await StartAsync(keySlots: 0);
        await using var client = host.Connect();
        await client.WriteAsync(Command("SET", "session", "x", "EX", "10") + Command("SET", "keep", "y") + Command("TTL", "session") + Command("TTL", "keep"));
        await ExpectAsync(client, "+OK\r\n+OK\r\n:10\r\n:-1\r\n");

        host.Advance(TimeSpan.FromSeconds(4));
        await client.WriteAsync(Command("TTL", "session") + Command("EXPIRE", "keep", "100") + Command("TTL", "keep"));
        await ExpectAsync(client, ":6\r\n:1\r\n:100\r\n");

        var management = host.Cluster.Client.GetGrain<IManagementGrain>(0);
        async Task<int> KeyGrains() => (await management.GetSimpleGrainStatistics())
            .Where(s => s.GrainType.Contains(nameof(RespKeyspaceGrain), StringComparison.Ordinal)).Sum(s => s.ActivationCount);
        Assert.Equal(2, await KeyGrains());
        host.Advance(TimeSpan.FromSeconds(7));
        await Poll.UntilAsync(async () => await KeyGrains() == 1, () => "the expired key's grain is still active");

        await client.WriteAsync(Command("GET", "session") + Command("EXISTS", "session", "keep") + Command("SET", "a", "1", "PX", "1500") + Command("EXPIRE", "a", "0") + Command("GET", "a"));
        await ExpectAsync(client, "$-1\r\n:1\r\n+OK\r\n:1\r\n$-1\r\n");
    }

    [Fact]
    public async Task Subscribers_receive_every_publishers_messages_in_publish_order_and_only_pubsub_commands_while_subscribed()
    {
        await using var host = await StartAsync();
        await using var subscriber = host.Connect();
        await subscriber.WriteAsync(Command("SUBSCRIBE", "news", "sport"));
        await ExpectAsync(subscriber, "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n");
        await subscriber.WriteAsync(Command("GET", "k") + Command("PING"));
        await ExpectAsync(subscriber,
            "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
            + "*2\r\n$4\r\npong\r\n$0\r\n\r\n");

        // Two publishers, 500 messages each in one pipelined write: each publisher's order is kept.
        await using var first = host.Connect();
        await using var second = host.Connect();
        await Task.WhenAll(
            first.WriteAsync(string.Concat(Enumerable.Range(0, 500).Select(i => Command("PUBLISH", "news", $"a{i}")))),
            second.WriteAsync(string.Concat(Enumerable.Range(0, 500).Select(i => Command("PUBLISH", "news", $"b{i}")))));
        await ExpectAsync(first, string.Concat(Enumerable.Repeat(":1\r\n", 500)));
        await ExpectAsync(second, string.Concat(Enumerable.Repeat(":1\r\n", 500)));
        var received = new List<string>();
        for (var i = 0; i < 1000; i++)
        {
            Assert.Equal("*3", await subscriber.ReadLineAsync());
            Assert.Equal("$7", await subscriber.ReadLineAsync());
            Assert.Equal("message", await subscriber.ReadLineAsync());
            Assert.Equal("$4", await subscriber.ReadLineAsync());
            Assert.Equal("news", await subscriber.ReadLineAsync());
            await subscriber.ReadLineAsync();
            received.Add((await subscriber.ReadLineAsync())!);
        }

        Assert.Equal(Enumerable.Range(0, 500).Select(i => $"a{i}"), received.Where(m => m[0] == 'a'));
        Assert.Equal(Enumerable.Range(0, 500).Select(i => $"b{i}"), received.Where(m => m[0] == 'b'));

        // Unsubscribed, it hears nothing more and may use every command again.
        await subscriber.WriteAsync(Command("UNSUBSCRIBE"));
        await ExpectAsync(subscriber, "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n");
        await first.WriteAsync(Command("PUBLISH", "news", "late"));
        await ExpectAsync(first, ":0\r\n");
        await subscriber.WriteAsync(Command("ECHO", "back"));
        await ExpectAsync(subscriber, "$4\r\nback\r\n");

        // Give-back: a subscriber that goes away without unsubscribing leaves no membership behind.
        await using var leaver = host.Connect();
        await leaver.WriteAsync(Command("SUBSCRIBE", "gone"));
        await ExpectAsync(leaver, "*3\r\n$9\r\nsubscribe\r\n$4\r\ngone\r\n:1\r\n");
        Assert.Equal(1, await host.Cluster.Client.GetGroup("resp:channel:gone").Count());
        leaver.Reset();
        await Poll.UntilAsync(async () => await host.Cluster.Client.GetGroup("resp:channel:gone").Count() == 0, () => "the channel still has the subscriber");
    }

    [Fact]
    public async Task A_subscriber_that_stops_reading_is_cut_past_32_MiB_behind_while_one_reading_steadily_gets_everything()
    {
        await using var host = await StartAsync();
        await using var stalled = host.Connect();
        await using var steady = host.Connect();
        foreach (var client in new[] { stalled, steady })
        {
            await client.WriteAsync(Command("SUBSCRIBE", "feed"));
            await ExpectAsync(client, "*3\r\n$9\r\nsubscribe\r\n$4\r\nfeed\r\n:1\r\n");
        }

        // 48 messages of 1 MiB: the steady reader drains as they come; the stalled one never reads.
        var message = new string('m', 1024 * 1024);
        var push = $"*3\r\n$7\r\nmessage\r\n$4\r\nfeed\r\n${message.Length}\r\n{message}\r\n";
        var reading = Task.Run(async () =>
        {
            for (var i = 0; i < 48; i++)
            {
                await ExpectAsync(steady, push);
            }
        });
        await using var publisher = host.Connect();
        var counts = new List<string>();
        for (var i = 0; i < 48; i++)
        {
            await publisher.WriteAsync(Command("PUBLISH", "feed", message));
            counts.Add((await publisher.ReadLineAsync())!);
        }

        await reading;
        Assert.Equal(":2", counts[0]);
        Assert.Equal(":1", counts[^1]);

        // Cut, as Redis cuts a subscriber past its limit: what waited for it is discarded, and the connection is reset.
        await Assert.ThrowsAsync<Microsoft.AspNetCore.Connections.ConnectionResetException>(() => stalled.ReadToEndAsync());
        Assert.Equal(ConnectionCloseReason.WriteBufferLimit, await stalled.ClosedAsync());
    }
}
