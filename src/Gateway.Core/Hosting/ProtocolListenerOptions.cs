using System.Net;
using System.Net.Sockets;
using OrleansProtocol.Framing;

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

    /// <summary>
    /// How the stream is cut into frames. Raw (the default) delivers bytes as they arrive through <c>DataReceived</c>;
    /// framed listeners deliver whole frames through <c>FrameReceived</c>.
    /// </summary>
    public FramingOptions Framing { get; set; } = new();

    /// <summary>
    /// Where each connection's grain is activated. Defaults to <see cref="ConnectionPlacement.Local"/>: the silo holding
    /// the socket, so every callback is a local call.
    /// </summary>
    public ConnectionPlacement Placement { get; set; }

    /// <summary>
    /// Expect a PROXY protocol header (HAProxy v1 or v2) before anything else, as load balancers send it, and take the
    /// client's address from it (<c>GetExtraInfo("peername")</c>). Off by default; when on, accepted only from
    /// <see cref="ProxyTrustedNetworks"/>, and applied before TLS.
    /// </summary>
    public bool ProxyProtocol { get; set; }

    /// <summary>
    /// Accept connections in-process only, through <see cref="ProtocolServer.ConnectInMemory"/>, instead of binding
    /// sockets (<see cref="Host"/> and <see cref="Port"/> are not used): the same pump, framing, limits, flow control
    /// and TLS run on pipe pairs. For tests (the test kit uses it); off by default.
    /// </summary>
    public bool InMemory { get; set; }

    /// <summary>Networks allowed to send PROXY headers, as CIDR blocks separated by commas (e.g. <c>10.0.0.0/8</c>).</summary>
    public string? ProxyTrustedNetworks { get; set; }

    /// <summary>How long a trusted peer has to send its PROXY header. Defaults to 10 seconds, as a TLS handshake.</summary>
    public TimeSpan ProxyHeaderTimeout { get; set; } = TimeSpan.FromSeconds(10);

    // The validator has checked every entry parses.
    internal IReadOnlyList<IPNetwork> TrustedNetworks => SplitList(ProxyTrustedNetworks).Select(IPNetwork.Parse).ToArray();

    /// <summary>TLS termination; off unless a certificate is configured.</summary>
    public TlsOptions Tls { get; set; } = new();

    /// <summary>
    /// Hard cap on bytes written by the protocol and not yet taken by the peer; past it the connection is aborted with
    /// <see cref="ConnectionCloseReason.WriteBufferLimit"/>. Back-pressure keeps a healthy connection far below it: input
    /// waits while writing is paused (see <see cref="ReadWhileWritingPaused"/>), so a protocol that writes in its
    /// callbacks buffers at most the high-water mark plus one callback's writes, and a peer that stops reading is cut
    /// by <see cref="MinSendDataRate"/>. The cap stops what back-pressure cannot: a single reply larger than it, or a
    /// protocol that ignores <c>PauseWriting</c> while writing from timers or tasks faster than its peer reads.
    /// Defaults to 64 MiB: the largest reply a protocol may write at once (Redis' pub/sub client output hard limit is
    /// 32 MB; its normal clients have none). Null turns it off: a risk, since such a protocol then holds whatever it
    /// writes.
    /// </summary>
    public long? MaxWriteBufferSize { get; set; } = 64 * 1024 * 1024;

    /// <summary>
    /// How many bytes of group messages (<see cref="IConnectionGroup"/>) may wait for a connection's peer, apart from
    /// what its protocol wrote; a group message past it closes the member or is dropped for it, as the send's
    /// <see cref="GroupOverflow"/> says. Defaults to 8 MiB, Redis' soft limit for a pub/sub client's output: a
    /// subscriber reading steadily stays far below it through any burst a protocol would send.
    /// </summary>
    public long MaxGroupBacklog { get; set; } = 8 * 1024 * 1024;

    /// <summary>
    /// Keep delivering input while the protocol's writing is paused. By default (false) the gateway holds the next
    /// <c>DataReceived</c>, <c>FrameReceived</c> and <c>EofReceived</c> from <c>PauseWriting</c> until
    /// <c>ResumeWriting</c>, as a blocking server stops reading while it cannot write: a request/response protocol
    /// then cannot outrun a peer that reads slowly, and TCP pushes back on the peer. Set it for a protocol that must
    /// read while it cannot write (a relay that pauses its other side, a subscriber that must be able to
    /// unsubscribe); such a protocol bounds its own output, as asyncio expects of every protocol.
    /// </summary>
    public bool ReadWhileWritingPaused { get; set; }

    /// <summary>
    /// Most connections open at once on this listener; connections beyond it are closed at once and counted, existing
    /// ones are unaffected. Defaults to 10,000 (SuperSocket 1.6's <c>maxConnectionNumber</c>; Kestrel has none by
    /// default). Null turns it off: a risk under a connection flood.
    /// </summary>
    public int? MaxConnections { get; set; } = 10_000;

    /// <summary>
    /// Most connections open at once from one client address; off (null) by default, as in Kestrel and Redis: every
    /// client behind one NAT or load balancer shares an address, and a load test from one host opens thousands. Set it
    /// where clients have their own addresses. With <see cref="ProxyProtocol"/> it counts the client address the
    /// header names, decided once the header is read.
    /// </summary>
    public int? MaxConnectionsPerAddress { get; set; }

    /// <summary>
    /// What a connection refused at a connection limit is told before it is closed (UTF-8 text, sent as is, then a
    /// FIN): <c>"-ERR max number of clients reached\r\n"</c> for a Redis-style protocol. Null (the default) resets the
    /// connection with nothing said. Not for TLS listeners: the refusal comes before the handshake.
    /// </summary>
    public string? RefusalMessage { get; set; }

    /// <summary>
    /// A connection with no byte either way for this long is closed with <see cref="ConnectionCloseReason.IdleTimeout"/>
    /// (the protocol's <c>CloseRequested</c> can say goodbye first). Off (<see cref="Timeout.InfiniteTimeSpan"/>) by
    /// default, as Redis' <c>timeout 0</c>, asyncio and Netty: a generic protocol's clients may rightly wait in silence
    /// (a subscriber, a client between commands). Kestrel's 130 s is HTTP's keep-alive, not a TCP rule. Set it where
    /// silence means a dead peer; dead peers that never send a FIN otherwise hold their connections until the
    /// connection limits or TCP keep-alive end them.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// A connection with no byte either way for this long hibernates, if its protocol opts in (<c>Hibernatable</c>)
    /// and its grain has no callback, timer, task or unsent write pending: the grain's state goes to the gateway, the
    /// activation is deactivated, and the gateway wakes it with that state before the next callback or call by id.
    /// Off (<see cref="Timeout.InfiniteTimeSpan"/>) by default. The idle and rate clocks keep counting while it sleeps.
    /// </summary>
    public TimeSpan HibernateAfter { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// A connection whose peer sends nothing for this long after connecting (after its PROXY header and TLS handshake,
    /// which have their own deadlines) is closed with <see cref="ConnectionCloseReason.FirstDataTimeout"/> (the
    /// protocol's <c>CloseRequested</c> can say why first). Off (<see cref="Timeout.InfiniteTimeSpan"/>) by default: in
    /// many protocols the client waits silently at first (a Redis client before its first command, a server that speaks
    /// first). Kestrel's 30 s <c>RequestHeadersTimeout</c> fits protocols where the client always speaks first; set
    /// it for those. Outbound connections have none.
    /// </summary>
    public TimeSpan FirstDataTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Slowloris protection on framed listeners: while the gateway holds an incomplete frame and waits on the peer for
    /// the rest, the peer must send at least this many bytes per second on average once
    /// <see cref="MinReceiveDataRateGracePeriod"/> has passed, or the connection is closed with
    /// <see cref="ConnectionCloseReason.ReceiveRateTooLow"/>. Time the grain spends (or a protocol that paused
    /// reading) does not count. Defaults to 240 bytes/s, Kestrel's <c>MinRequestBodyDataRate</c>. Null turns it off: a
    /// risk, since a peer trickling a frame then holds its connection until the idle timeout. Raw listeners cannot tell
    /// an incomplete message and rely on the idle timeout and connection limits.
    /// </summary>
    public double? MinReceiveDataRate { get; set; } = 240;

    /// <summary>How long an incomplete frame may arrive at any rate before <see cref="MinReceiveDataRate"/> applies. Defaults to 5 seconds, as Kestrel.</summary>
    public TimeSpan MinReceiveDataRateGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Slow-reader protection: bytes the gateway buffers for the peer (those the kernel's send buffer did not take)
    /// must be taken within <see cref="MinSendDataRateGracePeriod"/> or their time at this many bytes per second,
    /// whichever is longer (bytes queued meanwhile add their time), or the connection is aborted with
    /// <see cref="ConnectionCloseReason.SendRateTooLow"/>. Defaults to 240 bytes/s, Kestrel's
    /// <c>MinResponseDataRate</c>. Null turns it off: a risk, since a peer that stops reading then holds what was
    /// buffered for it until the idle timeout (the <see cref="MaxWriteBufferSize"/> cap still applies).
    /// </summary>
    public double? MinSendDataRate { get; set; } = 240;

    /// <summary>The least time a stall in sending gets before <see cref="MinSendDataRate"/> applies. Defaults to 5 seconds, as Kestrel.</summary>
    public TimeSpan MinSendDataRateGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Disable Nagle's algorithm. Defaults to true, as asyncio sets <c>TCP_NODELAY</c> on every socket.</summary>
    public bool NoDelay { get; set; } = true;

    /// <summary>
    /// Kestrel's read-ahead limit: at least <see cref="MaxReadBufferSize"/>, and room for one whole frame with its
    /// header and delimiter, so a frame at the limit can always complete.
    /// </summary>
    internal long EffectiveMaxReadBufferSize =>
        Framing.Kind == FramingKind.Raw ? MaxReadBufferSize : Math.Max(MaxReadBufferSize, Framing.MaxFrameSize + 16L + Framing.DelimiterBytes.Length);

    /// <summary>
    /// Listens on a Unix domain socket at this path instead of <see cref="Host"/> and <see cref="Port"/> (asyncio
    /// <c>create_unix_server</c>). An empty file left there by a server that did not close (a stale socket) is
    /// replaced; the file is removed when the listener closes. Connections report the path as <c>sockname</c> and an
    /// empty <c>peername</c>, as asyncio does; per-address limits do not apply (clients have no address).
    /// </summary>
    public string? UnixSocketPath { get; set; }

    internal IEnumerable<EndPoint> GetEndPoints() => UnixSocketPath is { Length: > 0 } path
        ? [new UnixDomainSocketEndPoint(path)]
        : SplitList(Host).Select(h => new IPEndPoint(ParseHost(h) ?? IPAddress.Loopback, Port)).Distinct();

    /// <summary>A comma-separated setting (hosts, networks, exporters), trimmed, without empty entries.</summary>
    internal static string[] SplitList(string? list) =>
        (list ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    internal static IPAddress? ParseHost(string? host) => host switch
    {
        "localhost" => IPAddress.Loopback,
        "*" => IPAddress.Any,
        _ when IPAddress.TryParse(host, out var address) => address,
        _ => null,
    };
}

/// <summary>Where a listener's connection grains are activated.</summary>
public enum ConnectionPlacement
{
    /// <summary>On the silo holding the socket (the grain class's <c>[PreferLocalPlacement]</c>).</summary>
    Local,

    /// <summary>On any active silo, at random: spreads protocol work over the cluster.</summary>
    Random,

    /// <summary>On the active silo chosen by a hash of the connection id.</summary>
    Hash,

    /// <summary>On an active silo other than the socket's (the local one when it is alone): keeps socket and protocol work apart.</summary>
    Remote,
}

/// <summary>A listener's framing, bindable from configuration.</summary>
public sealed class FramingOptions
{
    /// <summary>Raw (default), LengthPrefixed, Line, Delimited, or Custom (with <see cref="Decoder"/>).</summary>
    public FramingKind Kind { get; set; }

    /// <summary>
    /// Custom: makes the decoder of one connection (called once per connection, with the listener's
    /// <see cref="FrameFormat"/>). Set in code; setting it makes <see cref="Kind"/> Custom. The gateway runs it under
    /// the same limits as the built-in framings (see <see cref="IFrameDecoder"/>).
    /// </summary>
    public Func<FrameFormat, IFrameDecoder>? Decoder
    {
        get => _decoder;
        set
        {
            _decoder = value;
            if (value is not null)
            {
                Kind = FramingKind.Custom;
            }
        }
    }

    private Func<FrameFormat, IFrameDecoder>? _decoder;

    /// <summary>LengthPrefixed: bytes in the length prefix, 1, 2, 4 or 8. Defaults to 4.</summary>
    public int PrefixLength { get; set; } = 4;

    /// <summary>LengthPrefixed: network byte order (default) or little-endian (false).</summary>
    public bool BigEndian { get; set; } = true;

    /// <summary>LengthPrefixed: added to the prefix's value to get the body length (<c>-PrefixLength</c> when the length counts itself).</summary>
    public int LengthAdjustment { get; set; }

    /// <summary>Delimited: the delimiter, as UTF-8 text (in JSON, "\r\n\r\n" gives CR LF CR LF).</summary>
    public string? Delimiter { get; set; }

    /// <summary>
    /// The largest frame accepted. Defaults to 1 MiB (SuperSocket's <c>MaxPackageLength</c>; DotNetty makes every
    /// decoder declare one). A larger frame closes the connection with <c>FrameTooLarge</c> before its body is buffered.
    /// </summary>
    public int MaxFrameSize { get; set; } = 1024 * 1024;

    internal static FramingOptions From(FrameFormat format) => new()
    {
        Kind = format.Kind,
        PrefixLength = format.PrefixLength,
        BigEndian = format.BigEndian,
        LengthAdjustment = format.LengthAdjustment,
        Delimiter = format.Delimiter is { } d ? System.Text.Encoding.UTF8.GetString(d) : null,
        MaxFrameSize = format.MaxFrameSize,
    };

    /// <summary>One connection's decoder, or null for a raw listener.</summary>
    internal IFrameDecoder? CreateDecoder(FrameFormat format) => Kind switch
    {
        FramingKind.Raw => null,
        FramingKind.Custom => Decoder?.Invoke(format) ?? throw new InvalidOperationException("Custom framing needs a Decoder."),
        _ => new FrameDecoder(format),
    };

    internal byte[] DelimiterBytes => Delimiter is null ? [] : System.Text.Encoding.UTF8.GetBytes(Delimiter);

    internal FrameFormat ToFormat() => Kind == FramingKind.Raw
        ? FrameFormat.Raw
        : new FrameFormat
        {
            Kind = Kind,
            PrefixLength = PrefixLength,
            BigEndian = BigEndian,
            LengthAdjustment = LengthAdjustment,
            Delimiter = Kind == FramingKind.Delimited ? DelimiterBytes : null,
            MaxFrameSize = MaxFrameSize,
        };
}
