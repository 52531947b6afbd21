using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>
/// The live view beside Orleans' dashboard: per listener, open connections, accepted/refused/closed per second, close
/// reasons, bytes each way, paused connections; and the live connections of every silo (id, peer, socket's silo,
/// grain's silo, age, bytes). <c>/connections</c> is the page, <c>/connections/data</c> its JSON.
/// </summary>
public static class LiveView
{
    /// <summary>The page's path.</summary>
    public const string Path = "/connections";

    /// <summary>Maps the page and its data on the host's web port (the health endpoint's, 127.0.0.1 by default).</summary>
    public static IEndpointRouteBuilder MapLiveView(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet(Path, () => Results.Content(Page, "text/html; charset=utf-8"));
        endpoints.MapGet(Path + "/data", async (IServiceProvider services) =>
        {
            var totals = services.GetRequiredService<GatewayTotals>().Snapshot(services.GetRequiredService<ProtocolGateway>().Servers.Select(s => s.Name));
            var grains = services.GetRequiredService<IGrainFactory>();
            var connections = await Task.WhenAll(totals.Where(t => t.Listener != "outbound")
                .Select(t => grains.ListConnectionStatusAsync(t.Listener)));
            var groups = await grains.ListGroupsAsync();
            return Results.Json(new
            {
                silo = services.GetRequiredService<ILocalSiloDetails>().SiloAddress.ToParsableString(),
                listeners = totals,
                groups = groups.OrderByDescending(g => g.Value).Take(100).Select(g => new { name = g.Key, members = g.Value }),
                connections = connections.SelectMany(c => c).OrderBy(c => c.Age).Take(500).Select(c => new
                {
                    id = c.Info.ConnectionId,
                    listener = c.Info.ListenerName,
                    peer = c.Info.RemoteEndPoint?.ToString() ?? c.Info.RemotePath,
                    socketSilo = c.Info.GatewaySilo,
                    grainSilo = c.Hibernated ? "hibernated" : c.GrainSilo,
                    ageSeconds = Math.Round(c.Age.TotalSeconds, 1),
                    bytesReceived = c.BytesReceived,
                    bytesSent = c.BytesSent,
                    paused = c.ReadingPaused ? (c.WritingPaused ? "both" : "read") : c.WritingPaused ? "write" : "",
                }),
            });
        });
        return endpoints;
    }

    // One self-contained page: polls the data every second and turns totals into rates between two polls.
    private const string Page = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>OrleansProtocol — live connections</title>
        <style>
          body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
          table { border-collapse: collapse; margin-bottom: 1.5em; }
          th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: right; }
          th:first-child, td:first-child { text-align: left; }
          .muted { color: #888; }
        </style>
        </head>
        <body>
        <h1>Live connections</h1>
        <p class="muted">Silo <span id="silo">…</span> · <a href="/dashboard">Orleans dashboard</a> · updated <span id="updated">never</span></p>
        <p>Open connections (all listeners): <strong id="open-total">…</strong></p>
        <table id="listeners">
          <thead><tr><th>listener</th><th>open</th><th>accepted/s</th><th>refused/s</th><th>closed/s</th><th>bytes in</th><th>bytes out</th><th>paused (read/write)</th><th>hibernated</th><th>close reasons</th></tr></thead>
          <tbody></tbody>
        </table>
        <h2>Groups (<span id="group-count">0</span>)</h2>
        <table id="groups">
          <thead><tr><th>group</th><th>members</th></tr></thead>
          <tbody></tbody>
        </table>
        <h2>Connections (<span id="connection-count">0</span>)</h2>
        <table id="connections">
          <thead><tr><th>id</th><th>peer</th><th>socket silo</th><th>grain silo</th><th>age s</th><th>bytes in</th><th>bytes out</th><th>paused</th></tr></thead>
          <tbody></tbody>
        </table>
        <script>
        "use strict";
        let previous = null;
        function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
        function row(values) { const tr = document.createElement("tr"); values.forEach(v => tr.appendChild(cell(v))); return tr; }
        async function refresh() {
          const response = await fetch("connections/data", { cache: "no-store" });
          const data = await response.json();
          const now = performance.now();
          const rate = (listener, field) => {
            const before = previous && previous.totals[listener.listener];
            if (!before) return "–";
            return ((listener[field] - before[field]) * 1000 / (now - previous.time)).toFixed(1);
          };
          document.getElementById("silo").textContent = data.silo;
          const listeners = document.querySelector("#listeners tbody");
          listeners.replaceChildren(...data.listeners.map(l => row([
            l.listener, l.open, rate(l, "accepted"), rate(l, "refused"), rate(l, "closed"), l.bytesReceived, l.bytesSent,
            l.pausedReading + " / " + l.pausedWriting,
            l.hibernated,
            Object.entries(l.closeReasons).map(([reason, count]) => reason + " " + count).join(", ")])));
          document.getElementById("open-total").textContent = data.listeners.reduce((sum, l) => sum + l.open, 0);
          document.querySelector("#groups tbody").replaceChildren(...data.groups.map(g => row([g.name, g.members])));
          document.getElementById("group-count").textContent = data.groups.length;
          const connections = document.querySelector("#connections tbody");
          connections.replaceChildren(...data.connections.map(c => row([
            c.id, c.peer, c.socketSilo, c.grainSilo || "–", c.ageSeconds, c.bytesReceived, c.bytesSent, c.paused])));
          document.getElementById("connection-count").textContent = data.connections.length;
          document.getElementById("updated").textContent = new Date().toLocaleTimeString();
          previous = { time: now, totals: Object.fromEntries(data.listeners.map(l => [l.listener, l])) };
        }
        function loop() { refresh().catch(error => { document.getElementById("updated").textContent = "failed: " + error; }).finally(() => setTimeout(loop, 1000)); }
        loop();
        </script>
        </body>
        </html>
        """;
}
