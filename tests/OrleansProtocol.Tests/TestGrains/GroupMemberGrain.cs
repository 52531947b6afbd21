using System.Text;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>
/// A line protocol for the group tests. Says <c>id CONNECTION-ID</c> when made; then <c>join G</c>, <c>leave G</c>,
/// <c>send G TEXT</c> (to every other member of G; answers <c>sent DELIVERED</c>), <c>own N</c> (writes N lines of its
/// own, <c>own 0</c> … , each 1 KiB, from one callback) and <c>close</c>. On a framed listener each frame is one line.
/// </summary>
public sealed class GroupMemberGrain : ProtocolGrain
{
    private readonly StringBuilder _line = new();

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        Say($"id {transport.Connection.ConnectionId}");
        return Task.CompletedTask;
    }

    protected override async Task DataReceived(ReadOnlyMemory<byte> data)
    {
        foreach (var c in Encoding.UTF8.GetString(data.Span))
        {
            if (c != '\n')
            {
                _line.Append(c);
                continue;
            }

            var line = _line.ToString();
            _line.Clear();
            await Handle(line);
        }
    }

    protected override Task FrameReceived(ReadOnlyMemory<byte> frame) => Handle(Encoding.UTF8.GetString(frame.Span));

    private async Task Handle(string line)
    {
        var parts = line.Split(' ', 3);
        switch (parts[0])
        {
            case "join":
                Say(await GrainFactory.GetGroup(parts[1]).Add(Transport.Connection) ? $"joined {parts[1]}" : "not joined");
                break;
            case "leave":
                Say($"left {await GrainFactory.GetGroup(parts[1]).Remove(Transport.Connection.ConnectionId)}");
                break;
            case "send":
                var result = await GrainFactory.GetGroup(parts[1]).Send(Encoding.UTF8.GetBytes(parts[2] + "\n"), except: Transport.Connection.ConnectionId);
                Say($"sent {result.Delivered}");
                break;
            case "own":
                for (var i = 0; i < int.Parse(parts[1]); i++)
                {
                    Say($"own {i} " + new string('o', 1024));
                }

                break;
            case "close":
                Transport.Close();
                break;
        }
    }

    private void Say(string line)
    {
        if (Transport.Connection.Framing.Kind == FramingKind.Raw)
        {
            Transport.Write(Encoding.UTF8.GetBytes(line + "\n"));
        }
        else
        {
            Transport.WriteFrame(Encoding.UTF8.GetBytes(line));
        }
    }
}
