using System.Security.Cryptography.X509Certificates;

namespace OrleansProtocol.Tests.Infrastructure;

public static class TestCertificates
{
    /// <summary>Writes the certificate of <paramref name="pfxPath"/> as PEM files (certificate, key) and returns their paths.</summary>
    public static (string Certificate, string Key) ExportPem(string pfxPath)
    {
        using var certificate = X509CertificateLoader.LoadPkcs12FromFile(pfxPath, null, X509KeyStorageFlags.Exportable);
        var stem = Path.Combine(Path.GetTempPath(), $"orleansprotocol-test-{Guid.NewGuid():N}");
        File.WriteAllText(stem + ".crt", certificate.ExportCertificatePem());
        File.WriteAllText(stem + ".key", certificate.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem());
        return (stem + ".crt", stem + ".key");
    }

    /// <summary>Writes a fresh self-signed certificate for localhost/127.0.0.1 as a PFX file and returns its path.</summary>
    public static string CreatePfx()
    {
        using var certificate = OrleansProtocol.Gateway.Hosting.DevelopmentCertificate.CreateSelfSigned(TimeSpan.FromDays(1));
        var path = Path.Combine(Path.GetTempPath(), $"orleansprotocol-test-{Guid.NewGuid():N}.pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx));
        return path;
    }
}
