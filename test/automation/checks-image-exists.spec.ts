import { DescribeImagesCommand, ECRClient, ImageNotFoundException, RepositoryNotFoundException } from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { expect } from "chai";
import { EcrImageCatalog } from "../../automation/checks/image-exists";

const DIGEST = `sha256:${"cd".repeat(32)}`;
const REF = `123456789012.dkr.ecr.us-east-1.amazonaws.com/web-prod@${DIGEST}`;

describe("checks/image-exists: is a rollback's image still in ECR", () => {
  const client = new ECRClient({ region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "y" } });
  // The instance, not the class: other specs mock their own ECR clients.
  const ecr = mockClient(client);
  afterEach(() => ecr.reset());
  after(() => ecr.restore());

  it("asks ECR for the digest in its repository and registry", async () => {
    ecr.on(DescribeImagesCommand).resolves({ imageDetails: [{ imageDigest: DIGEST }] });
    expect(await new EcrImageCatalog(client).presence(REF, "prod")).to.deep.equal({ status: "present" });
    expect(ecr.commandCalls(DescribeImagesCommand)[0].args[0].input).to.deep.equal({ registryId: "123456789012", repositoryName: "web-prod", imageIds: [{ imageDigest: DIGEST }] });
  });

  it("answers missing when the lifecycle policy expired the image", async () => {
    ecr.on(DescribeImagesCommand).rejects(new ImageNotFoundException({ message: "not found", $metadata: {} }));
    expect(await new EcrImageCatalog(client).presence(REF, "prod")).to.deep.equal({ status: "missing" });
  });

  it("answers unknown, with the reason, when ECR cannot say, so the caller decides", async () => {
    ecr.on(DescribeImagesCommand).rejects(new RepositoryNotFoundException({ message: "no repo", $metadata: {} }));
    const answer = await new EcrImageCatalog(client).presence(REF, "prod");
    expect(answer.status).to.equal("unknown");
    expect(await new EcrImageCatalog(client).presence("docker.io/library/nginx@" + DIGEST, "prod")).to.include({ status: "unknown" });
  });
});
