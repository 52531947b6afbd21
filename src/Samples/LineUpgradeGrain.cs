using System.Text;

namespace OrleansProtocol.Samples;

/// <summary>
/// A line protocol that upgrades itself: it answers each line with <c>echo: …</c>, and on the line <c>STRINGS</c> it
/// hands the connection to <see cref="StringReceiverGrain"/> (asyncio <c>set_protocol</c>, as for STARTTLS or a
/// WebSocket hand-off). Bytes that followed the command in the same read go to the new protocol, in order.
/// Served on 127.0.0.1:7002 by the gateway host.
/// </summary>
public sealed class LineUpgradeGrain : ProtocolGrain
{
    private const int MaxLineLength = 4096;
    private readonly List<byte> _line = [];

    /// <inheritdoc />
    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        var span = data.Span;
        for (var i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)'\n')
            {
                _line.Add(span[i]);
                if (_line.Count > MaxLineLength)
                {
                    Transport.Close(ConnectionCloseReason.FrameTooLarge, $"A line is longer than {MaxLineLength} bytes.");
                    return Task.CompletedTask;
                }

                continue;
            }

            var line = Encoding.UTF8.GetString(_line.ToArray()).TrimEnd('\r');
            _line.Clear();
            if (line == "STRINGS")
            {
                Transport.Write("upgrading to length-prefixed strings\n"u8);
                Transport.SetProtocol<StringReceiverGrain>(span[(i + 1)..]);
                return Task.CompletedTask;
            }

            Transport.Write(Encoding.UTF8.GetBytes($"echo: {line}\n"));
        }

        return Task.CompletedTask;
    }
}
