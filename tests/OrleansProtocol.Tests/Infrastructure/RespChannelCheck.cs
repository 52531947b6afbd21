using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// A RESP channel across gateways: a subscriber on each, messages published through one; every subscriber must get
/// every message once, in order. PUBLISH answers the receivers on the publisher's silo only (as in a Redis Cluster).
/// </summary>
public static class RespChannelCheck
{
    /// <summary>Runs the check on <paramref name="gateways"/> (one subscriber each), publishing through <paramref name="publisher"/>; throws on the first difference.</summary>
    public static async Task RunAsync(IReadOnlyList<IPEndPoint> gateways, int publisher, string channel, int messages = 5)
    {
        var subscribers = new List<TestClient>();
        try
        {
            foreach (var gateway in gateways)
            {
                var subscriber = await TestClient.ConnectAsync(gateway);
                subscribers.Add(subscriber);
                await subscriber.SendAsync($"SUBSCRIBE {channel}\r\n");
                Assert.Equal(["*3\r", "$9\r", "subscribe\r", $"${channel.Length}\r", $"{channel}\r", ":1\r"], await LinesAsync(subscriber, 6));
            }

            await using (var client = await TestClient.ConnectAsync(gateways[publisher]))
            {
                for (var n = 0; n < messages; n++)
                {
                    await client.SendAsync($"PUBLISH {channel} m{n}\r\n");
                    Assert.Equal(":1\r", await client.ReadLineAsync());
                }
            }

            foreach (var subscriber in subscribers)
            {
                for (var n = 0; n < messages; n++)
                {
                    var payload = $"m{n}";
                    Assert.Equal(["*3\r", "$7\r", "message\r", $"${channel.Length}\r", $"{channel}\r", $"${payload.Length}\r", $"{payload}\r"], await LinesAsync(subscriber, 7));
                }
            }
        }
        finally
        {
            foreach (var subscriber in subscribers)
            {
                await subscriber.DisposeAsync();
            }
        }
    }

    private static async Task<string[]> LinesAsync(TestClient client, int count)
    {
        var lines = new string[count];
        for (var i = 0; i < count; i++)
        {
            lines[i] = await client.ReadLineAsync();
        }

        return lines;
    }
}
