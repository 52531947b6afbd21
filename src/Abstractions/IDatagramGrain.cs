using System.Net;

namespace OrleansProtocol;

/// <summary>
/// The grain the gateway drives for a UDP endpoint (asyncio's <c>DatagramProtocol</c>): one per endpoint, or one per
/// remote peer, as the endpoint is configured. Derive from <c>DatagramProtocolGrain</c> rather than implementing this.
/// </summary>
/// <remarks>
/// One call in flight per grain; datagrams that arrive meanwhile wait in a bounded queue and travel together in the
/// next call. Datagrams the queue cannot take are dropped and counted, never blocking the socket: UDP has no flow
/// control. Each call's reply carries the datagrams the grain sent during it.
/// </remarks>
[Alias("OrleansProtocol.IDatagramGrain")]
public interface IDatagramGrain : IGrainWithStringKey
{
    /// <summary>The endpoint (or, per peer, the first datagram from the peer) is ready; called once, first.</summary>
    [Alias("ConnectionMade")]
    Task<Datagram[]> ConnectionMade(DatagramEndpointInfo endpoint, IDatagramObserver transport);

    /// <summary>Datagrams in arrival order, each with its sender.</summary>
    [Alias("DatagramsReceived")]
    Task<Datagram[]> DatagramsReceived([Immutable] Datagram[] datagrams);

    /// <summary>A send or receive failed (asyncio <c>error_received</c>), e.g. an ICMP port unreachable.</summary>
    [Alias("ErrorReceived")]
    Task<Datagram[]> ErrorReceived(string error, IPEndPoint? remoteEndPoint);

    /// <summary>The endpoint closed (or the peer went idle); called once, last.</summary>
    [Alias("ConnectionLost")]
    Task ConnectionLost(ConnectionCloseReason reason, string? message);
}

/// <summary>Where a datagram grain's unsolicited sends go (timers, other grains' calls).</summary>
[Alias("OrleansProtocol.IDatagramObserver")]
public interface IDatagramObserver : IGrainObserver
{
    /// <summary>Sends the datagrams; never blocks (a full socket drops and counts them).</summary>
    [Alias("SendTo")]
    Task SendTo(Datagram[] datagrams);
}

/// <summary>One datagram and its remote end: the sender when received, the destination when sent.</summary>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.Datagram")]
public readonly record struct Datagram([property: Id(0)] ReadOnlyMemory<byte> Data, [property: Id(1)] IPEndPoint RemoteEndPoint);

/// <summary>What the gateway knows about a UDP endpoint when it hands it to a grain.</summary>
/// <param name="EndpointName">The endpoint's name, as registered.</param>
/// <param name="LocalEndPoint">The bound address (asyncio's <c>sockname</c>).</param>
/// <param name="Peer">In per-peer mode, the peer this grain serves; null in per-endpoint mode.</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.DatagramEndpointInfo")]
public sealed record DatagramEndpointInfo(
    [property: Id(0)] string EndpointName,
    [property: Id(1)] IPEndPoint LocalEndPoint,
    [property: Id(2)] IPEndPoint? Peer);
