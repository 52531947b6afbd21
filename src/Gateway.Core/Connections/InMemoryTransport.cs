using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// A listener whose connections are in-process pipe pairs instead of sockets (<see cref="ProtocolListenerOptions.InMemory"/>):
/// the same accept loop, pump, framing, limits, flow control and TLS run on them, with half-close and reset, so a
/// protocol can be driven by a test without a port. As Kestrel's in-memory transport does for its functional tests.
/// </summary>
internal sealed class InMemoryConnectionListener(EndPoint endPoint, long maxReadBufferSize) : IConnectionListener
{
    private readonly Channel<InMemoryServerConnection> _pending = Channel.CreateUnbounded<InMemoryServerConnection>();
    private int _nextPort;

    public EndPoint EndPoint => endPoint;

    /// <summary>Opens a connection from <paramref name="remote"/> (127.0.0.1 with a port of its own when null).</summary>
    /// <returns>The client's end, or null when the listener no longer accepts (closed).</returns>
    public InMemoryConnection? Connect(IPEndPoint? remote)
    {
        remote ??= new IPEndPoint(IPAddress.Loopback, 1024 + (Interlocked.Increment(ref _nextPort) % 60000));

        // Client to server: bounded like Kestrel's input (MaxReadBufferSize), so a peer that outruns the pump waits.
        // Server to client: bounded at the kernel-like 64 KiB, so a client that does not read fills the gateway's
        // write buffer and the protocol sees PauseWriting, as over a socket.
        var toServer = new Pipe(new PipeOptions(pauseWriterThreshold: maxReadBufferSize, resumeWriterThreshold: maxReadBufferSize / 2, useSynchronizationContext: false));
        var toClient = new Pipe(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, useSynchronizationContext: false));
        var server = new InMemoryServerConnection(toServer, toClient, endPoint, remote);
        if (!_pending.Writer.TryWrite(server))
        {
            return null;
        }

        return new InMemoryConnection(toClient.Reader, toServer.Writer, remote);
    }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _pending.Reader.ReadAsync(cancellationToken);
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _pending.Writer.TryComplete();
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();

        // Connections that were never accepted are refused: their clients see a reset.
        while (_pending.Reader.TryRead(out var unaccepted))
        {
            unaccepted.Abort(new ConnectionAbortedException("The in-memory listener closed before accepting."));
            await unaccepted.DisposeAsync();
        }
    }
}

/// <summary>The gateway's side of an in-memory connection: what Kestrel's socket connection is for a socket.</summary>
internal sealed class InMemoryServerConnection(Pipe toServer, Pipe toClient, EndPoint local, EndPoint remote) : ConnectionContext
{
    private static long _ids;

    public override string ConnectionId { get; set; } = $"memory-{Interlocked.Increment(ref _ids)}";

    public override IFeatureCollection Features { get; } = new FeatureCollection();

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public override IDuplexPipe Transport { get; set; } = new Pipes(toServer.Reader, toClient.Writer);

    public override EndPoint? LocalEndPoint { get; set; } = local;

    public override EndPoint? RemoteEndPoint { get; set; } = remote;

    /// <summary>A reset: the client's reads fail with <see cref="ConnectionResetException"/>, the server's input ends.</summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        // A send waiting on a client that does not read is released first, as a reset releases a blocked socket send.
        toClient.Writer.CancelPendingFlush();
        toClient.Writer.Complete(new ConnectionResetException("The server reset the connection.", abortReason));
        toServer.Reader.CancelPendingRead();
        toServer.Writer.Complete(abortReason);
    }

    public override ValueTask DisposeAsync()
    {
        toServer.Reader.Complete();
        toClient.Writer.Complete();
        return ValueTask.CompletedTask;
    }

    private sealed record Pipes(PipeReader Input, PipeWriter Output) : IDuplexPipe;
}
