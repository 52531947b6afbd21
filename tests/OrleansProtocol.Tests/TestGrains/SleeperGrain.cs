using System.Collections.Concurrent;
using System.Text;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>
/// A line protocol that hibernates: it counts the lines it was sent and keeps the line being read, in its dehydrated
/// state; it answers each line with the count and how many times its grain was activated (woken). <c>later</c> arms a
/// CallLater an hour away (the grain stays awake), <c>cancel</c> cancels it.
/// </summary>
public sealed class SleeperGrain : ProtocolGrain
{
    /// <summary>Per connection id: activations (1 + wakes), ConnectionMade and ConnectionLost calls.</summary>
    public static readonly ConcurrentDictionary<string, (int Activations, int Made, int Lost)> Calls = new();

    private readonly List<byte> _line = [];
    private long _lines;
    private TimerHandle? _later;

    /// <inheritdoc />
    protected override bool Hibernatable => true;

    /// <inheritdoc />
    protected override void Dehydrate(IDehydrationContext context)
    {
        context.TryAddValue("lines", _lines);
        context.TryAddValue("partial", _line.ToArray());
    }

    /// <inheritdoc />
    protected override void Rehydrate(IRehydrationContext context)
    {
        _lines = context.TryGetValue("lines", out long lines) ? lines : 0;
        if (context.TryGetValue("partial", out byte[]? partial))
        {
            _line.AddRange(partial);
        }
    }

    /// <inheritdoc />
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        Calls.AddOrUpdate(this.GetPrimaryKeyString(), (1, 0, 0), (_, c) => c with { Activations = c.Activations + 1 });
        return base.OnActivateAsync(cancellationToken);
    }

    /// <inheritdoc />
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        Calls.AddOrUpdate(transport.Connection.ConnectionId, (1, 1, 0), (_, c) => c with { Made = c.Made + 1 });
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task ConnectionLost(Exception? exception)
    {
        Calls.AddOrUpdate(Transport.Connection.ConnectionId, (1, 0, 1), (_, c) => c with { Lost = c.Lost + 1 });
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        foreach (var b in data.Span)
        {
            if (b != (byte)'\n')
            {
                _line.Add(b);
                continue;
            }

            var line = Encoding.UTF8.GetString([.. _line]);
            _line.Clear();
            _lines++;
            if (line == "later")
            {
                _later = CallLater(TimeSpan.FromHours(1), () => Transport.Write("late\n"u8));
            }
            else if (line == "cancel")
            {
                _later?.Cancel();
                _later = null;
            }

            var activations = Calls.TryGetValue(Transport.Connection.ConnectionId, out var c) ? c.Activations : 0;
            Transport.Write(Encoding.UTF8.GetBytes($"{_lines} {activations} {line}\n"));
        }

        return Task.CompletedTask;
    }
}
