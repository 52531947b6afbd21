namespace OrleansProtocol.Gateway;

/// <summary>Whether a UDP endpoint has one grain, or one grain per remote peer.</summary>
public enum DatagramGrainMode
{
    /// <summary>One grain per remote address and port: its state is that peer's (game and IoT traffic).</summary>
    PerPeer,

    /// <summary>One grain for the whole endpoint, as asyncio's single <c>DatagramProtocol</c>.</summary>
    PerEndpoint,
}

/// <summary>Settings of a UDP endpoint (asyncio <c>create_datagram_endpoint</c>).</summary>
public sealed class DatagramEndpointOptions
{
    /// <summary>Address to bind: an IP literal, <c>localhost</c> or <c>*</c>. Defaults to <c>127.0.0.1</c>.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>UDP port; 0 picks a free one (see <see cref="DatagramEndpoint.LocalEndPoint"/>).</summary>
    public int Port { get; set; }

    /// <summary>One grain per peer (default) or one for the endpoint.</summary>
    public DatagramGrainMode Mode { get; set; } = DatagramGrainMode.PerPeer;

    /// <summary>
    /// Datagrams waiting for a grain; more are dropped and counted, never blocking the socket (UDP has no flow
    /// control). Defaults to 1,024: 16 grain calls' worth at <see cref="MaxDatagramsPerCall"/>, and at most 1.5 MiB of
    /// Ethernet-sized datagrams per grain (the Linux default socket receive buffer holds about 200 KiB). Must be positive.
    /// </summary>
    public int MaxQueuedDatagrams { get; set; } = 1024;

    /// <summary>
    /// Most datagrams delivered in one grain call. Defaults to 64, which keeps a call near <c>MaxDataReceivedSize</c>'s
    /// 64 KiB for Ethernet-sized datagrams (one Orleans message stays small).
    /// </summary>
    public int MaxDatagramsPerCall { get; set; } = 64;

    /// <summary>
    /// Per-peer mode: most peers served at once; datagrams from further peers are dropped and counted. Defaults to
    /// 10,000, as a listener's <c>MaxConnections</c> (a peer holds a grain as a connection does). Must be positive.
    /// </summary>
    public int MaxPeers { get; set; } = 10_000;

    /// <summary>
    /// Per-peer mode: a peer quiet for this long has its grain told <c>ConnectionLost</c> (IdleTimeout) and released.
    /// Defaults to 2 minutes (Kestrel's keep-alive is 130 s).
    /// </summary>
    public TimeSpan PeerIdleTimeout { get; set; } = TimeSpan.FromMinutes(2);
}
