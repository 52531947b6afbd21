using System.Collections.Concurrent;
using System.Collections.Immutable;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// Keeps every log message at or above a level (Information unless told) with its event id and the scopes around it,
/// so tests can assert what the gateway said.
/// </summary>
public sealed class CapturingLoggerProvider(LogLevel minimum = LogLevel.Information) : ILoggerProvider
{
    private readonly ConcurrentQueue<LogEntry> _entries = new();
    private readonly CallbackRecorder.Signal _changed = new();
    private readonly AsyncLocal<ImmutableStack<object>> _scopes = new();

    public LogLevel Minimum { get; } = minimum;

    public IReadOnlyCollection<LogEntry> Entries => _entries.ToArray();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public async Task<string> WaitForAsync(Func<string, bool> match)
    {
        using var cts = new CancellationTokenSource(TestTimeouts.Default);
        while (true)
        {
            var next = _changed.Next;
            if (_entries.FirstOrDefault(e => match(e.Message))?.Message is { } found)
            {
                return found;
            }

            await next.WaitAsync(cts.Token);
        }
    }

    public void Dispose()
    {
    }

    public sealed record LogEntry(LogLevel Level, string Category, EventId EventId, string Message, string Scopes, Exception? Exception = null);

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
        {
            var outer = owner._scopes.Value ?? [];
            owner._scopes.Value = outer.Push(state);
            return new Pop(() => owner._scopes.Value = outer);
        }

        public bool IsEnabled(LogLevel logLevel) => logLevel >= owner.Minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                var scopes = string.Join(" => ", owner._scopes.Value ?? []);
                owner._entries.Enqueue(new LogEntry(logLevel, category, eventId, formatter(state, exception), scopes, exception));
                owner._changed.Fire();
            }
        }
    }

    private sealed class Pop(Action pop) : IDisposable
    {
        public void Dispose() => pop();
    }
}
