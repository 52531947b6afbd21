using System.Net;

namespace OrleansProtocol.Gateway;

/// <summary>
/// Settings of one listener: where it accepts connections and how much it buffers for each. Named after the
/// listener (<c>IOptionsMonitor&lt;ProtocolListenerOptions&gt;.Get(name)</c>).
/// </summary>
public sealed class ProtocolListenerOptions
{
    /// <summary>
    /// Address(es) to bind, separated by commas: IP literals, <c>localhost</c>, or <c>*</c> for every IPv4 interface
    /// (asyncio's host or sequence of hosts: one socket each). Defaults to <c>127.0.0.1</c> so nothing is exposed by
    /// accident; use <c>0.0.0.0</c> (or <c>::</c>) in containers.
    /// </summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>TCP port to bind; 0 picks a free port (see <see cref="ProtocolServer.EndPoints"/>).</summary>
    public int Port { get; set; }

    /// <summary>
    /// Accept connections as soon as the server is bound (asyncio's <c>start_serving</c>). When false the server is
    /// bound and listening, connections wait in the backlog, and <see cref="ProtocolServer.StartServing"/> starts
    /// accepting. Defaults to true.
    /// </summary>
    public bool StartServing { get; set; } = true;

    /// <summary>Accept backlog. Defaults to 512, Kestrel's socket transport default (asyncio uses 100).</summary>
    public int Backlog { get; set; } = 512;

    /// <summary>
    /// Most bytes delivered in one <c>DataReceived</c> call; more waiting bytes go in the next call. Defaults to
    /// 64 KiB (Akka.IO's received-message limit; keeps each grain message small).
    /// </summary>
    public int MaxDataReceivedSize { get; set; } = 64 * 1024;

    /// <summary>
    /// Most bytes the gateway reads ahead of the grain. When this many are waiting (the grain is slow, or paused
    /// reading) the gateway stops reading the socket and TCP pushes back on the peer. Defaults to 1 MiB, Kestrel's
    /// <c>MaxReadBufferSize</c>.
    /// </summary>
    public long MaxReadBufferSize { get; set; } = 1024 * 1024;

    /// <summary>Disable Nagle's algorithm. Defaults to true, as asyncio sets <c>TCP_NODELAY</c> on every socket.</summary>
    public bool NoDelay { get; set; } = true;

    internal IEnumerable<IPEndPoint> GetEndPoints() =>
        SplitHosts(Host).Select(h => new IPEndPoint(ParseHost(h) ?? IPAddress.Loopback, Port)).Distinct();

    internal static string[] SplitHosts(string? hosts) =>
        (hosts ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    internal static IPAddress? ParseHost(string? host) => host switch
    {
        "localhost" => IPAddress.Loopback,
        "*" => IPAddress.Any,
        _ when IPAddress.TryParse(host, out var address) => address,
        _ => null,
    };
}
