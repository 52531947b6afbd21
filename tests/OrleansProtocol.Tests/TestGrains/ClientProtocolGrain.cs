using System.Collections.Concurrent;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>The client side of an outbound connection: greets, then answers each line with "pong: line".</summary>
public sealed class ClientProtocolGrain(CallbackRecorder recorder) : ProtocolGrain
{
    /// <summary>Activations ever made of this class, to prove a failed connect leaves none.</summary>
    public static readonly ConcurrentBag<string> Activations = [];

    private readonly StringBuilder _line = new();
    private ConnectionRecord? _record;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        Activations.Add(this.GetPrimaryKeyString());
        return base.OnActivateAsync(cancellationToken);
    }

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        _record = recorder.For(transport.Connection);
        _record.Add("CM");
        transport.Write("hello from grain\n"u8);
        return Task.CompletedTask;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        _record!.Add("DR");
        foreach (var ch in Encoding.UTF8.GetString(data.Span))
        {
            if (ch == '\n')
            {
                Transport.Write(Encoding.UTF8.GetBytes($"pong: {_line}\n"));
                _line.Clear();
            }
            else
            {
                _line.Append(ch);
            }
        }

        return Task.CompletedTask;
    }

    protected override Task<bool> EofReceived()
    {
        _record!.Add("ER");
        return Task.FromResult(false);
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        _record!.Lost(exception, CloseReason);
        return Task.CompletedTask;
    }
}

public interface IClientStarterGrain : IGrainWithGuidKey
{
    Task<ConnectionInfo> Open(string host, int port);

    Task<ConnectionInfo> OpenTls(string host, int port, bool allowUntrusted);
}

/// <summary>A grain that opens outbound connections, as protocol code would.</summary>
public sealed class ClientStarterGrain : Grain, IClientStarterGrain
{
    public Task<ConnectionInfo> Open(string host, int port) =>
        GrainFactory.CreateConnectionAsync<ClientProtocolGrain>(host, port, r => r with { ConnectTimeout = TimeSpan.FromSeconds(5) });

    public Task<ConnectionInfo> OpenTls(string host, int port, bool allowUntrusted) =>
        GrainFactory.CreateConnectionAsync<ClientProtocolGrain>(host, port, r => r with
        {
            ConnectTimeout = TimeSpan.FromSeconds(5),
            Tls = new ClientTls("localhost") { AllowUntrustedCertificate = allowUntrusted },
        });
}
