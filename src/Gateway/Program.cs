using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using OrleansProtocol;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;

// An embedded single-silo gateway serving the samples: Echo on 127.0.0.1:7000, the seed's length-prefixed string
// receiver on 127.0.0.1:5566 (framed by the grain) and 127.0.0.1:5567 (framed by the gateway), and a line protocol
// that upgrades to it (SetProtocol) on 127.0.0.1:7002, and a line chat across silos on 127.0.0.1:7001. Hosts, ports and log levels come from appsettings.json, environment variables
// (OrleansProtocol__Listeners__echo__Port=7100) or the command line (--OrleansProtocol:Listeners:echo:Port=7100).
var builder = Host.CreateApplicationBuilder(args);
var configuration = builder.Configuration;
builder.UseOrleans(silo =>
{
    silo.UseLocalhostClustering(
        siloPort: configuration.GetValue("Silo:SiloPort", 11111),
        gatewayPort: configuration.GetValue("Silo:GatewayPort", 30000));
    silo.AddProtocolGateway(o => configuration.GetSection("OrleansProtocol:Gateway").Bind(o));
    silo.AddProtocolListener<EchoGrain>("echo", o =>
    {
        o.Port = 7000;
        configuration.GetSection("OrleansProtocol:Listeners:echo").Bind(o);
    });
    silo.AddProtocolListener<StringReceiverGrain>("string-receiver", o =>
    {
        o.Port = 5566;
        configuration.GetSection("OrleansProtocol:Listeners:string-receiver").Bind(o);
    });
    silo.AddProtocolListener<FramedStringReceiverGrain>("framed-string-receiver", o =>
    {
        o.Port = 5567;
        o.Framing = new FramingOptions { Kind = FramingKind.LengthPrefixed, PrefixLength = 4, BigEndian = false, MaxFrameSize = 99_999 };
        configuration.GetSection("OrleansProtocol:Listeners:framed-string-receiver").Bind(o);
    });
    silo.AddProtocolListener<ChatGrain>("chat", o =>
    {
        o.Port = 7001;
        configuration.GetSection("OrleansProtocol:Listeners:chat").Bind(o);
    });
    silo.AddProtocolListener<LineUpgradeGrain>("upgrade", o =>
    {
        o.Port = 7002;
        configuration.GetSection("OrleansProtocol:Listeners:upgrade").Bind(o);
    });
});

await builder.Build().RunAsync();
