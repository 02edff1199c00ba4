export default function Page() {
  return <h1>trade</h1>;
}
