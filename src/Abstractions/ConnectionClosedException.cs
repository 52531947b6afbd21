namespace OrleansProtocol;

/// <summary>
/// What <c>ConnectionLost</c> receives when a connection ended for a reason other than a clean close
/// (see <see cref="ConnectionCloseReasonExtensions.IsClean"/>): a reset, a shutdown, an unreachable peer.
/// </summary>
[GenerateSerializer, Alias("OrleansProtocol.ConnectionClosedException")]
public sealed class ConnectionClosedException : Exception
{
    /// <summary>Creates the exception for <paramref name="reason"/>.</summary>
    public ConnectionClosedException(ConnectionCloseReason reason, string? message = null, Exception? innerException = null)
        : base(message ?? reason.ToString(), innerException)
    {
        Reason = reason;
    }

    /// <summary>Why the connection ended.</summary>
    [Id(0)]
    public ConnectionCloseReason Reason { get; }
}
