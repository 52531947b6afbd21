using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using OrleansProtocol.Gateway.Connections;

namespace OrleansProtocol.Gateway;

/// <summary>
/// The client's end of a connection to an in-memory listener (<see cref="ProtocolListenerOptions.InMemory"/>,
/// <see cref="ProtocolServer.ConnectInMemory"/>): a duplex pipe, with the half-close and reset a socket has.
/// </summary>
public sealed class InMemoryConnection : IDuplexPipe, IAsyncDisposable
{
    internal InMemoryConnection(PipeReader input, PipeWriter output, IPEndPoint localEndPoint)
    {
        Input = input;
        Output = output;
        LocalEndPoint = localEndPoint;
    }

    /// <summary>What the server sends; completes at its FIN, throws <see cref="ConnectionResetException"/> at a reset.</summary>
    public PipeReader Input { get; }

    /// <summary>What goes to the server. After the server resets the connection its writes throw <see cref="InvalidOperationException"/> (the pipe is complete).</summary>
    public PipeWriter Output { get; }

    /// <summary>The client's address as the server sees it (<c>peername</c>).</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>A <see cref="Stream"/> over the connection (for <c>SslStream</c>, or code written for streams); disposing it does not close the connection.</summary>
    public Stream AsStream() => new DuplexPipeStream(this);

    /// <summary>Half-close (<c>write_eof</c>, a FIN): the server gets <c>EofReceived</c>; reading goes on.</summary>
    public void WriteEof() => Output.Complete();

    /// <summary>A reset (RST): the server gets <c>ConnectionLost</c> with a reset; nothing more goes either way.</summary>
    public void Reset()
    {
        Output.Complete(new ConnectionResetException("The client reset the connection."));
        Input.Complete();
    }

    /// <summary>Closes both directions, as closing a socket does.</summary>
    public ValueTask DisposeAsync()
    {
        Output.Complete();
        Input.Complete();
        return ValueTask.CompletedTask;
    }
}
