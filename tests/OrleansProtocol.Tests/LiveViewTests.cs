using System.Diagnostics;
using System.Text.RegularExpressions;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The live view in a real headless browser (Debian's chromium): Orleans' dashboard and the connections page.</summary>
public sealed class LiveViewTests
{
    private static readonly string? Chromium = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists);

    /// <summary>Loads <paramref name="url"/>, lets its scripts run for a few seconds, and returns the DOM and the console lines.</summary>
    private static async Task<(string Dom, string[] Console)> LoadAsync(string url)
    {
        var start = new ProcessStartInfo(Chromium!,
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=4000", "--dump-dom", url])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var browser = Process.Start(start)!;
        var dom = browser.StandardOutput.ReadToEndAsync();
        var log = browser.StandardError.ReadToEndAsync();
        await browser.WaitForExitAsync().WaitAsync(TestTimeouts.Default * 2);
        return (await dom, (await log).Split('\n').Where(l => l.Contains(":CONSOLE", StringComparison.Ordinal)).ToArray());
    }

    private static int OpenTotal(string dom) => int.Parse(Regex.Match(dom, @"id=""open-total"">(\d+)<").Groups[1].Value);

    [SkippableFact]
    public async Task The_dashboard_and_the_connections_page_load_without_script_errors_and_count_connections_as_they_open_and_close()
    {
        Skip.If(Chromium is null, "chromium is not installed on this machine (.ci/run installs it)");
        var web = TestPorts.Free();
        using var host = GatewayHostProcess.Start(
            $"--Silo:SiloPort={TestPorts.Free()}",
            $"--Silo:GatewayPort={TestPorts.Free()}",
            $"--Health:Urls=http://127.0.0.1:{web}",
            "--OrleansProtocol:PortOffset=20800");
        var listeners = await host.WaitForListenersAsync("echo", "chat");
        var echo = listeners["echo"];
        await host.WaitForOutputAsync("Application started");

        // Orleans' dashboard renders its overview, with no script error.
        var (dashboard, dashboardConsole) = await LoadAsync($"http://127.0.0.1:{web}/dashboard/");
        Assert.Contains("Active Silos", dashboard);
        Assert.DoesNotContain(dashboardConsole, l => l.Contains("Uncaught", StringComparison.Ordinal));

        // The connections page: every listener, nothing open; then three echo clients; then none again.
        var (empty, console) = await LoadAsync($"http://127.0.0.1:{web}/connections");
        Assert.Empty(console);
        Assert.Equal(0, OpenTotal(empty));
        Assert.Contains("<td>resp</td>", empty);

        var clients = new List<TestClient>();
        for (var i = 0; i < 3; i++)
        {
            var client = await TestClient.ConnectAsync(echo);
            await client.SendAsync($"client {i}\n");
            Assert.Equal($"client {i}", await client.ReadLineAsync());
            clients.Add(client);
        }

        // And a chat member in a room: its connection group is listed with its member count.
        var member = await TestClient.ConnectAsync(listeners["chat"]);
        Assert.StartsWith("* welcome", await member.ReadLineAsync());
        await member.SendAsync("/join ops\n");
        Assert.StartsWith("* joined ops", await member.ReadLineAsync());

        var (three, _) = await LoadAsync($"http://127.0.0.1:{web}/connections");
        Assert.Equal(4, OpenTotal(three));
        Assert.Contains("<td>chat:ops</td><td>1</td>", three);
        Assert.Contains($"<td>{clients[0].LocalEndPoint}</td>", three);
        Assert.Matches(@"<td>echo</td><td>3</td>", three);

        clients.Add(member);
        foreach (var client in clients)
        {
            client.ShutdownSend();
            Assert.Empty(await client.ReadToEndAsync());
            await client.DisposeAsync();
        }

        // The gateway ends a connection a moment after the client's EOF: the page follows.
        var closed = "";
        await Poll.UntilAsync(async () => OpenTotal(closed = (await LoadAsync($"http://127.0.0.1:{web}/connections")).Dom) == 0, () => closed);
        Assert.Matches(@"PeerClosed 3", closed);
        Assert.DoesNotContain("<td>chat:ops</td>", closed);
    }
}
