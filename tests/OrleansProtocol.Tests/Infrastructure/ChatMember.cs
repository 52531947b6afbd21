using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// A client of the chat sample: joins a room, talks, and collects the lines other members said, per speaker, in the
/// order they arrived. Room notices (<c>* … joined/left</c>) are kept apart.
/// </summary>
public sealed class ChatMember : IAsyncDisposable
{
    private readonly TestClient _client;
    private readonly Dictionary<string, List<string>> _heard = [];
    private readonly List<string> _notices = [];
    private readonly CallbackRecorder.Signal _changed = new();
    private Task? _reading;

    private ChatMember(TestClient client, string nick)
    {
        _client = client;
        Nick = nick;
    }

    public string Nick { get; }

    public TestClient Client => _client;

    /// <summary>Lines this member sent, each of which its connection's grain counts (<c>/whoami</c>).</summary>
    public long LinesSent { get; private set; }

    /// <summary>True once the server closed the connection (a clean EOF).</summary>
    public bool Ended => _reading?.IsCompletedSuccessfully == true;

    /// <summary>Connects, takes <paramref name="nick"/> and joins <paramref name="room"/>; returns once the room confirmed.</summary>
    /// <remarks>
    /// Members' lines may arrive before the confirmation: the room writes to a new member as soon as it is one, between
    /// the awaits of the callback that is joining (connection calls interleave).
    /// </remarks>
    public static async Task<ChatMember> JoinAsync(EndPoint endPoint, string nick, string room)
    {
        var client = await TestClient.ConnectAsync(endPoint);
        Assert.StartsWith("* welcome", await client.ReadLineAsync());
        var member = new ChatMember(client, nick) { LinesSent = 2 };
        member._reading = member.ReadAsync();
        await client.SendAsync($"/nick {nick}\n/join {room}\n");
        await member.WaitForNoticeAsync($"* joined {room}");
        Assert.Contains($"* you are now {nick}", member.Notices);
        return member;
    }

    /// <summary>The room's and the grain's notices (<c>* …</c> lines), in order.</summary>
    public IReadOnlyList<string> Notices
    {
        get
        {
            lock (_heard)
            {
                return [.. _notices];
            }
        }
    }

    private async Task<string> WaitForNoticeAsync(string prefix, int after = 0)
    {
        using var timeout = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _changed.Next;
            if (Notices.Skip(after).FirstOrDefault(n => n.StartsWith(prefix, StringComparison.Ordinal)) is { } notice)
            {
                return notice;
            }

            Assert.False(_reading!.IsCompleted, $"{Nick}: the connection ended before '{prefix}'");
            await next.WaitAsync(timeout.Token);
        }
    }

    /// <summary>Asks the grain what it knows of this connection; returns its <c>* you are …</c> line.</summary>
    public async Task<string> WhoAmIAsync()
    {
        var before = Notices.Count;
        await _client.SendAsync("/whoami\n");
        LinesSent++;
        return await WaitForNoticeAsync("* you are ", before);
    }

    /// <summary>Says <paramref name="count"/> numbered lines, <paramref name="gap"/> apart.</summary>
    public async Task TalkAsync(int count, TimeSpan gap)
    {
        for (var i = 0; i < count; i++)
        {
            await _client.SendAsync($"line {i}\n");
            LinesSent++;
            if (gap > TimeSpan.Zero)
            {
                await Task.Delay(gap);
            }
        }
    }

    /// <summary>What <paramref name="speaker"/> said, as heard so far.</summary>
    public IReadOnlyList<string> HeardFrom(string speaker)
    {
        lock (_heard)
        {
            return _heard.TryGetValue(speaker, out var lines) ? [.. lines] : [];
        }
    }

    /// <summary>Waits until <paramref name="count"/> lines were heard from each of <paramref name="speakers"/>.</summary>
    public async Task WaitForAsync(IEnumerable<string> speakers, int count)
    {
        using var timeout = new CancellationTokenSource(TestTimeouts.Default);
        var names = speakers.ToArray();
        while (true)
        {
            var next = _changed.Next;
            if (names.All(s => HeardFrom(s).Count >= count))
            {
                return;
            }

            if (_reading!.IsCompleted)
            {
                await _reading;
                Assert.Fail($"{Nick}: the connection ended; heard {string.Join(", ", names.Select(s => $"{s}: {HeardFrom(s).Count}"))}");
            }

            await next.WaitAsync(timeout.Token);
        }
    }

    private async Task ReadAsync()
    {
        while (true)
        {
            string line;
            try
            {
                line = await _client.ReadLineAsync();
            }
            catch (EndOfStreamException)
            {
                return;
            }

            if (line.StartsWith('<') && line.IndexOf("> ", StringComparison.Ordinal) is var end and > 0)
            {
                lock (_heard)
                {
                    var speaker = line[1..end];
                    if (!_heard.TryGetValue(speaker, out var lines))
                    {
                        _heard[speaker] = lines = [];
                    }

                    lines.Add(line[(end + 2)..]);
                }

                _changed.Fire();
            }
            else if (line.StartsWith("* ", StringComparison.Ordinal))
            {
                lock (_heard)
                {
                    _notices.Add(line);
                }

                _changed.Fire();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        if (_reading is not null)
        {
            await _reading.WaitAsync(TestTimeouts.Default).ContinueWith(_ => { });
        }
    }
}
