using System.Text;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Samples;
using OrleansProtocol.Samples.Resp;
using OrleansProtocol.Testing;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The samples that hibernate in the sample host, on the test kit's fake clock: a RESP subscriber and a chat member
/// sleep, get their channel's and room's messages while asleep (the gateway writes them, the grain stays asleep), and
/// wake with their name, channels, nick and count.
/// </summary>
public sealed class HibernationSampleTests
{
    private static readonly TimeSpan After = TimeSpan.FromSeconds(30);

    private static string Command(params string[] arguments) =>
        $"*{arguments.Length}\r\n" + string.Concat(arguments.Select(a => $"${Encoding.UTF8.GetByteCount(a)}\r\n{a}\r\n"));

    private static async Task ExpectAsync(ProtocolTestClient client, string replies) =>
        Assert.Equal(replies, Encoding.UTF8.GetString(await client.ReadExactlyAsync(Encoding.UTF8.GetByteCount(replies))));

    private static async Task<GatewayConnection> SleepsAsync(ProtocolTestHost host, ProtocolTestClient client)
    {
        var id = (await client.ConnectionAsync()).ConnectionId;
        var connection = host.Server.FindConnection(id)!;
        await host.Time.AdvanceUntilAsync(host.Server, Poll.UntilAsync(() => connection.Sleep.IsAsleep, () => $"{id} did not hibernate"));
        return connection;
    }

    [Fact]
    public async Task A_sleeping_RESP_subscriber_gets_its_messages_asleep_and_wakes_with_its_name_and_channels()
    {
        await using var host = await ProtocolTestHost.StartAsync<RespGrain>(
            o =>
            {
                OrleansProtocol.Gateway.Hosting.RespListener.Configure(o);
                o.HibernateAfter = After;
            });
        await using var subscriber = host.Connect();
        await subscriber.WriteAsync(Command("CLIENT", "SETNAME", "sleepy") + Command("SUBSCRIBE", "news", "sport"));
        await ExpectAsync(subscriber, "+OK\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n");
        var sleeping = await SleepsAsync(host, subscriber);

        await using var publisher = host.Connect();
        await publisher.WriteAsync(Command("PUBLISH", "news", "while you slept"));
        await ExpectAsync(publisher, ":1\r\n");
        await ExpectAsync(subscriber, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$15\r\nwhile you slept\r\n");
        Assert.True(sleeping.Sleep.IsAsleep);

        // Woken by its next command: both channels and the name are still its own.
        await subscriber.WriteAsync(Command("UNSUBSCRIBE") + Command("CLIENT", "GETNAME"));
        await ExpectAsync(subscriber, "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n$6\r\nsleepy\r\n");
        Assert.False(sleeping.Sleep.IsAsleep);
    }

    [Fact]
    public async Task A_sleeping_chat_member_hears_the_room_asleep_and_wakes_with_its_nick_and_count()
    {
        await using var host = await ProtocolTestHost.StartAsync<ChatGrain>(o => o.HibernateAfter = After);
        await using var ann = host.Connect();
        await using var bob = host.Connect();
        foreach (var (member, nick) in new[] { (ann, "ann"), (bob, "bob") })
        {
            Assert.StartsWith("* welcome", await member.ReadLineAsync());
            await member.WriteAsync($"/nick {nick}\n/join lobby\n");
            Assert.Equal($"* you are now {nick}", await member.ReadLineAsync());
            Assert.StartsWith("* joined lobby", await member.ReadLineAsync());
        }

        Assert.Equal("* bob joined", await ann.ReadLineAsync());
        var annAsleep = await SleepsAsync(host, ann);
        await SleepsAsync(host, bob);

        await bob.WriteAsync("good morning\n");
        Assert.Equal("<bob> good morning", await ann.ReadLineAsync());
        Assert.True(annAsleep.Sleep.IsAsleep);

        await ann.WriteAsync("/whoami\n");
        Assert.Equal("* you are ann in lobby; 3 lines received", await ann.ReadLineAsync());
    }
}
