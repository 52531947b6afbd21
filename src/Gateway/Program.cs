using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Dashboard;
using OrleansProtocol;
using OrleansProtocol.Gateway;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Gateway.Hosting;
using OrleansProtocol.Samples;
using OrleansProtocol.Samples.Resp;
using OrleansProtocol.Wire;

// The gateway host: one silo serving the samples — Echo on 127.0.0.1:7000 (TCP and UDP), the seed's length-prefixed string receiver
// on 5566 (framed by the grain) and 5567 (framed by the gateway), a line chat across silos on 7001, and a line protocol
// that upgrades to the string receiver (SetProtocol) on 7002, a Redis-compatible server on 6380, SMTP's STARTTLS on
// 2525, echo on a Unix socket ($TMPDIR/orleansprotocol/echo.sock) — plus health endpoints and the live view.
// Everything comes from appsettings.json, environment variables (OrleansProtocol__Listeners__echo__Port=7100) or the
// command line (--OrleansProtocol:Listeners:echo:Port=7100). Clustering:Provider picks the membership provider:
// Localhost (default; several silos on one machine with Clustering:PrimarySiloPort) or Redis. Telemetry:Exporters
// (Console, Otlp) exports the gateway's and Orleans' metrics with OpenTelemetry; off by default.
var builder = WebApplication.CreateBuilder(args);
var configuration = builder.Configuration;
builder.WebHost.UseUrls(configuration.GetValue("Health:Urls", "http://127.0.0.1:8080")!);
var dashboard = configuration.GetValue("Dashboard:Enabled", true);
builder.UseOrleans(silo =>
{
    silo.UseClusteringFromConfiguration(configuration);
    if (dashboard)
    {
        silo.AddDashboard();
    }

    silo.AddProtocolGateway(o => configuration.GetSection("OrleansProtocol:Gateway").Bind(o));

    // Every sample port moves by PortOffset, so a second silo on the same machine needs one setting.
    var offset = configuration.GetValue("OrleansProtocol:PortOffset", 0);
    void Listener<TGrain>(string name, int port, Action<ProtocolListenerOptions>? extra = null)
        where TGrain : IProtocolGrain =>
        silo.AddProtocolListener<TGrain>(name, o =>
        {
            o.Port = port + offset;
            extra?.Invoke(o);
            configuration.GetSection($"OrleansProtocol:Listeners:{name}").Bind(o);
        });

    Listener<EchoGrain>("echo", 7000);

    // RFC 862 echo over UDP too, on the same port number as the TCP one.
    silo.AddDatagramEndpoint<EchoDatagramGrain>("echo-udp", o =>
    {
        o.Port = 7000 + offset;
        configuration.GetSection("OrleansProtocol:Datagrams:echo-udp").Bind(o);
    });
    Listener<StringReceiverGrain>("string-receiver", 5566);
    Listener<FramedStringReceiverGrain>("framed-string-receiver", 5567, o =>
        o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, PrefixLength = 4, BigEndian = false, MaxFrameSize = 99_999 });
    Listener<ChatGrain>("chat", 7001);
    Listener<LineUpgradeGrain>("upgrade", 7002);

    // Echo on a Unix domain socket too (asyncio create_unix_server): $TMPDIR/orleansprotocol/echo.sock.
    var socketDirectory = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "orleansprotocol")).FullName;
    Listener<EchoGrain>("echo-unix", 0, o => o.UnixSocketPath = Path.Combine(socketDirectory, offset == 0 ? "echo.sock" : $"echo-{offset}.sock"));

    // SMTP's opening and STARTTLS on 2525: plaintext, then TLS when the client asks (a self-signed localhost
    // certificate unless OrleansProtocol:Listeners:smtp:Tls:CertificatePath names one).
    Listener<SmtpGreeterGrain>("smtp", 2525, o =>
    {
        o.Framing = new FramingOptions { Kind = FramingKind.Line, MaxFrameSize = 1000 };
        o.Tls.StartTls = true;
        o.Tls.CertificatePath = DevelopmentCertificate.GetOrCreatePfx();
    });

    // A Redis-compatible server (RESP2) on 6380, beside a Redis that may already use 6379.
    silo.Services.Configure<RespOptions>(configuration.GetSection("Resp"));
    Listener<RespGrain>("resp", 6380, RespListener.Configure);
});
builder.Services.AddTelemetryFromConfiguration(configuration);
builder.Services.AddHealthChecks().AddCheck<GatewayHealthCheck>("gateway", tags: ["ready"]);
builder.Services.AddSingleton<GatewayTotals>();

var app = builder.Build();

// The live view, on the health endpoint's port (127.0.0.1 unless Health:Urls says otherwise): Orleans' dashboard at
// /dashboard and the gateway's own page at /connections. Counting starts now, before the silo accepts anything.
app.Services.GetRequiredService<GatewayTotals>();
if (dashboard)
{
    app.MapOrleansDashboard("/dashboard");
    app.MapLiveView();
}

// Liveness: the process answers. Readiness: the silo is active, every listener accepts, and the gateway is not draining.
app.MapHealthChecks(GatewayHealthCheck.LivePath, new HealthCheckOptions { Predicate = _ => false });
app.MapHealthChecks(GatewayHealthCheck.ReadyPath, new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready") });

// The process's allocation and CPU so far, for the bench's per-request figures (also on the meter as
// orleansprotocol.process.allocated_bytes), and its open and hibernated connections (the bench waits for sleep).
app.MapGet("/diagnostics/runtime", (GatewayTotals totals, ProtocolGateway gateway) =>
{
    var listeners = totals.Snapshot(gateway.Servers.Select(s => s.Name));
    return Results.Json(new
    {
        allocatedBytes = GC.GetTotalAllocatedBytes(),
        cpuSeconds = Environment.CpuUsage.TotalTime.TotalSeconds,
        gen0Collections = GC.CollectionCount(0),
        gen2Collections = GC.CollectionCount(2),
        openConnections = listeners.Sum(l => l.Open),
        hibernatedConnections = listeners.Sum(l => l.Hibernated),
    });
});
try
{
    await app.RunAsync();
    return 0;
}
catch (Exception ex) when (InvalidSettings(ex) is { Length: > 0 } problems)
{
    // Every bad setting in one message, each with its fix, instead of a stack trace per options class.
    Console.Error.WriteLine($"The gateway did not start: {problems.Length} invalid setting(s).{Environment.NewLine}  - {string.Join($"{Environment.NewLine}  - ", problems)}");
    return 2;
}

static string[] InvalidSettings(Exception exception) =>
    (exception is AggregateException aggregate ? aggregate.InnerExceptions : [exception])
        .OfType<Microsoft.Extensions.Options.OptionsValidationException>()
        .SelectMany(e => e.Failures)
        .ToArray();
