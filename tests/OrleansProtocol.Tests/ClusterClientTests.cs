using System.Text.RegularExpressions;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The cluster client (src/Client) as a user runs it: its own process, joining the real host's cluster.</summary>
public sealed class ClusterClientTests
{
    private static Task<(int ExitCode, string Output)> RunAsync(int gatewayPort, params string[] arguments) =>
        ClusterClientProcess.RunAsync([.. arguments, $"--Silo:GatewayPort={gatewayPort}"]);

    [Fact]
    public async Task The_cluster_client_lists_shows_writes_to_announces_to_closes_and_aborts_live_connections()
    {
        var gatewayPort = TestPorts.Free();
        using var host = GatewayHostProcess.Start(
            $"--Silo:SiloPort={TestPorts.Free()}",
            $"--Silo:GatewayPort={gatewayPort}",
            $"--Health:Urls=http://127.0.0.1:{TestPorts.Free()}",
            "--OrleansProtocol:PortOffset=20700");
        var chat = (await host.WaitForListenersAsync("chat"))["chat"];
        await host.WaitForOutputAsync("Application started");

        // Two chat members in one room.
        await using var first = await TestClient.ConnectAsync(chat);
        await using var second = await TestClient.ConnectAsync(chat);
        foreach (var client in new[] { first, second })
        {
            Assert.StartsWith("* welcome", await client.ReadLineAsync());
            await client.SendAsync("/join ops\n");
            Assert.StartsWith("* joined ops", await client.ReadLineAsync());
        }

        Assert.Equal("* guest-", (await first.ReadLineAsync())![..8]); // the second one joining

        // list: both, by their peer addresses, with their silos and figures.
        var (code, list) = await RunAsync(gatewayPort, "list", "chat");
        Assert.True(code == 0, list);
        Assert.Contains("2 connection(s) on listener chat", list);
        string IdOf(TestClient client) =>
            Regex.Match(list, $@"^(chat/[0-9a-f]+)\t{Regex.Escape(client.LocalEndPoint.ToString()!)}\t", RegexOptions.Multiline).Groups[1].Value;
        var (firstId, secondId) = (IdOf(first), IdOf(second));
        Assert.NotEqual("", firstId);
        Assert.NotEqual("", secondId);

        // show: one connection in full.
        (code, var show) = await RunAsync(gatewayPort, "show", firstId);
        Assert.True(code == 0, show);
        Assert.Matches($@"peer\s+{Regex.Escape(first.LocalEndPoint.ToString()!)}", show);
        Assert.Matches(@"protocol\s+chat", show);
        Assert.Matches(@"bytes in\s+10\n", show); // "/join ops\n"

        // send to one; announce to the room.
        Assert.Equal(0, (await RunAsync(gatewayPort, "send", firstId, "hello from the cluster")).ExitCode);
        Assert.Equal("hello from the cluster", await first.ReadLineAsync());
        (code, var announce) = await RunAsync(gatewayPort, "announce", "ops", "maintenance at noon");
        Assert.True(code == 0, announce);
        Assert.Contains("announced to 2 member(s) of ops", announce);
        Assert.Equal("* maintenance at noon", await first.ReadLineAsync());
        Assert.Equal("* maintenance at noon", await second.ReadLineAsync());

        // groups and members: the room is a connection group of two.
        (code, var groups) = await RunAsync(gatewayPort, "groups");
        Assert.True(code == 0, groups);
        Assert.Contains("chat:ops\t2", groups);
        (code, var members) = await RunAsync(gatewayPort, "members", "chat:ops");
        Assert.True(code == 0, members);
        Assert.Contains("2 member(s) of group chat:ops", members);
        Assert.Contains(firstId, members);
        Assert.Contains(secondId, members);

        // close one (it gets EOF), abort the other (a reset).
        Assert.Equal(0, (await RunAsync(gatewayPort, "close", firstId)).ExitCode);
        Assert.Empty(await first.ReadToEndAsync());
        Assert.Equal(0, (await RunAsync(gatewayPort, "abort", secondId)).ExitCode);
        await second.AssertDroppedAsync();

        // Gone once the gateway has ended it (a moment after the client's EOF); bad usage is refused with the usage text.
        var missing = "";
        await Poll.UntilAsync(async () => ((code, missing) = await RunAsync(gatewayPort, "show", firstId)).code == 1, () => missing);
        Assert.Contains($"No live connection {firstId}", missing);
        (code, var usage) = await RunAsync(gatewayPort, "frobnicate");
        Assert.Equal(2, code);
        Assert.Contains("usage: orleansprotocol", usage);
    }
}
