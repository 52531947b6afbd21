using System.Text;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Samples;

/// <summary>
/// The seed's example again, with the gateway doing the framing: the listener is configured for 4-byte little-endian
/// length-prefixed frames (at most 99,999 bytes), so the protocol sees whole strings and answers with
/// <c>WriteFrame</c>. Served on 127.0.0.1:5567 by the gateway host, beside the hand-framed one on 5566.
/// </summary>
public sealed class FramedStringReceiverGrain : ProtocolGrain
{
    /// <inheritdoc />
    protected override Task FrameReceived(ReadOnlyMemory<byte> frame)
    {
        Logger.LogInformation("received string: {Text}", Encoding.UTF8.GetString(frame.Span));
        Transport.WriteFrame("ok"u8);
        return Task.CompletedTask;
    }
}
