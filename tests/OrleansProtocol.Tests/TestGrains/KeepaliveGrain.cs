using System.Text;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>
/// MQTT's timing rules as a line protocol: <c>CONNECT n</c> must arrive whole within 10 s of connecting (a deadline,
/// however steadily its bytes come), then the client must send something at least every 1.5 × n seconds (a receive
/// timeout); <c>PING</c> answers <c>PONG</c>, <c>OFF</c> turns the timeout off, <c>TALK</c> makes the server write, <c>BAD</c> tries a negative timeout.
/// </summary>
public sealed class KeepaliveGrain : ProtocolGrain
{
    private readonly StringBuilder _line = new();

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.SetReceiveDeadline(TimeSpan.FromSeconds(10));
        return Task.CompletedTask;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        foreach (var ch in Encoding.ASCII.GetString(data.Span))
        {
            if (ch != '\n')
            {
                _line.Append(ch);
                continue;
            }

            var words = _line.ToString().Split(' ');
            _line.Clear();
            switch (words[0])
            {
                case "CONNECT":
                    Transport.SetReceiveDeadline(null);
                    Transport.SetReceiveTimeout(TimeSpan.FromSeconds(1.5 * int.Parse(words[1], System.Globalization.CultureInfo.InvariantCulture)));
                    Transport.Write("CONNACK\n"u8);
                    break;
                case "PING":
                    Transport.Write("PONG\n"u8);
                    break;
                case "OFF":
                    Transport.SetReceiveTimeout(null);
                    Transport.Write("ok\n"u8);
                    break;
                case "BAD":
                    try
                    {
                        Transport.SetReceiveTimeout(TimeSpan.FromSeconds(-1));
                    }
                    catch (ArgumentOutOfRangeException ex)
                    {
                        Transport.Write(Encoding.ASCII.GetBytes($"refused {ex.ParamName}\n"));
                    }

                    break;
                case "TALK":
                    // The server writes for a while: writes are not the peer's bytes, so they do not hold the timeout off.
                    CallLater(TimeSpan.FromSeconds(1), () => Transport.Write("news\n"u8));
                    CallLater(TimeSpan.FromSeconds(2), () => Transport.Write("news\n"u8));
                    CallLater(TimeSpan.FromSeconds(3), () => Transport.Write("news\n"u8));
                    break;
            }
        }

        return Task.CompletedTask;
    }
}
