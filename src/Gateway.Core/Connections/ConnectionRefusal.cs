using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// Refuses a connection at accept, before any grain exists: a reset with nothing said, or — with the listener's
/// <see cref="ProtocolListenerOptions.RefusalMessage"/> — the message, then a FIN, as Redis answers
/// <c>-ERR max number of clients reached</c> before it closes.
/// </summary>
internal static class ConnectionRefusal
{
    // How long a refused peer has to read the message and close its side; what it sends meanwhile is read and dropped,
    // so the close is a FIN rather than the reset that unread data would cause.
    private static readonly TimeSpan Linger = TimeSpan.FromSeconds(2);

    public static async Task RefuseAsync(ConnectionContext context, ReadOnlyMemory<byte> message, string reason)
    {
        try
        {
            if (message.IsEmpty || context.Features.Get<IConnectionSocketFeature>()?.Socket is not { } socket)
            {
                context.Abort(new ConnectionAbortedException(reason));
                return;
            }

            // A fresh socket's send buffer is empty: a short message goes to the kernel at once.
            await socket.SendAsync(message, SocketFlags.None);
            socket.Shutdown(SocketShutdown.Send);
            using var linger = new CancellationTokenSource(Linger);
            while (true)
            {
                var read = await context.Transport.Input.ReadAsync(linger.Token);
                context.Transport.Input.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted || read.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or ConnectionResetException)
        {
            // The peer went away or did not close in time: nothing more to do for it.
        }
        finally
        {
            await context.DisposeAsync();
        }
    }
}
