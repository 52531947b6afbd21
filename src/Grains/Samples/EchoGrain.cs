namespace OrleansProtocol.Samples;

/// <summary>
/// Echoes every byte back: asyncio's echo server as a grain. Served on 127.0.0.1:7000 by the gateway host.
/// </summary>
/// <remarks>
/// When the peer half-closes, the connection stays open until everything echoed has been sent, then closes
/// (the default <c>EofReceived</c> returns false: flush, then close).
/// </remarks>
public sealed class EchoGrain : ProtocolGrain
{
    /// <inheritdoc />
    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Transport.Write(data.Span);
        return Task.CompletedTask;
    }
}
