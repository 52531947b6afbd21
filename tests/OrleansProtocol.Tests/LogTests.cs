using Microsoft.Extensions.Logging;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The gateway's logs for one connection: what is said at which level, with which event id and scope.</summary>
[Collection(GatewayCollection.Name)]
public sealed class LogTests(GatewayClusterFixture fixture)
{
    [Fact]
    public async Task A_connection_logs_its_accept_and_one_close_line_with_reason_duration_and_bytes_at_Debug_and_nothing_per_read_above_Trace()
    {
        var (client, record) = await fixture.ConnectScriptAsync();
        var id = record.Connection.ConnectionId;
        const int rounds = 50;
        for (var i = 0; i < rounds; i++)
        {
            await client.SendAsync($"echo {i:D3}\n");
            Assert.Equal($"{i:D3}", await client.ReadLineAsync());
        }

        await client.SendAsync("close\n");
        Assert.Equal("bye", await client.ReadLineAsync());
        Assert.Empty(await client.ReadToEndAsync());
        await client.DisposeAsync();
        var closed = await fixture.Logs.WaitForAsync(m => m.Contains($"Connection {id} closed"));

        // The close line: reason, duration, and byte counts each way (50 × "echo nnn\n" + "close\n" in, 50 × "nnn\n" + "bye\n" out).
        Assert.Contains("LocalClose", closed);
        Assert.Contains($"{rounds * "echo 000\n".Length + "close\n".Length} bytes received, {rounds * "000\n".Length + "bye\n".Length} bytes sent", closed);

        var mine = fixture.Logs.Entries.Where(e => e.Message.Contains(id)).ToList();

        // Above Trace: the accept and the close, whatever the traffic. Per read: Trace only.
        Assert.Equal([10, 11], mine.Where(e => e.Level > LogLevel.Trace).Select(e => e.EventId.Id).Order());
        Assert.All(mine.Where(e => e.Level > LogLevel.Trace), e => Assert.Equal(LogLevel.Debug, e.Level));
        Assert.InRange(mine.Count(e => e.EventId.Name == "DataDelivered"), 1, rounds + 1);
        Assert.All(mine.Where(e => e.EventId.Name == "DataDelivered"), e => Assert.Equal(LogLevel.Trace, e.Level));

        // Every line about the connection carries its id in a log scope, so other lines logged inside it do too.
        Assert.All(mine, e => Assert.Contains($"ConnectionId:{id}", e.Scopes));
    }
}
