using System.Text;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Framing;

namespace OrleansProtocol.Samples;

/// <summary>
/// The seed's README example: strings prefixed by a 4-byte little-endian length (struct format <c>&lt;L</c>). Each
/// whole string is logged as <c>received string: …</c> and answered with the length-prefixed string <c>ok</c>.
/// Served on 127.0.0.1:5566 by the gateway host.
/// </summary>
public sealed class StringReceiverGrain : IntNStringReceiverGrain
{
    /// <inheritdoc />
    protected override bool LittleEndian => true;

    /// <inheritdoc />
    protected override Task StringReceived(ReadOnlyMemory<byte> data)
    {
        Logger.LogInformation("received string: {Text}", Encoding.UTF8.GetString(data.Span));
        SendString("ok"u8);
        return Task.CompletedTask;
    }
}
